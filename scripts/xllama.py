"""The in-process llama.cpp server the offline eval scripts share
(`rerank-eval.py`, `expansion-eval.py`): the prebuilt xllamacpp wheel,
which `scripts/llm-test-server` installs, one sequence at a time."""


def server(model: str, n_ctx: int, threads: int):
    """A llama.cpp server over `model` (a GGUF) answering in process; its
    HTTP side listens on a free local port that nothing uses."""
    import xllamacpp

    params = xllamacpp.CommonParams()
    params.model.path = model
    params.n_ctx = n_ctx
    params.n_parallel = 1
    params.cpuparams.n_threads = threads
    params.cpuparams_batch.n_threads = threads
    params.hostnames = ["127.0.0.1"]
    params.port = 0
    return xllamacpp.Server(params)
