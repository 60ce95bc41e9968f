"""An OpenAI-compatible embedding server for tests and benches: llama.cpp's own
HTTP server (through the prebuilt xllamacpp wheel) serving the same
all-MiniLM-L6-v2 weights the daemon embeds with locally.

    python embed_test_server.py convert --model-dir DIR --out M.gguf
    python embed_test_server.py serve --model M.gguf [--port P] [--url-file F]
        [--threads 2] [--parallel 4]

`convert` turns the installed model (DIR/model.onnx, int8 weights with one
scale per output channel, and DIR/tokenizer.json) into a GGUF file with
llama.cpp's BERT layout: every weight is dequantized exactly as the ONNX graph
does it (int8 times scale, in f32), so the server computes with the very
numbers the local engine uses. No network access: the model files are the
ones `mindory models fetch` installed.

`serve` answers POST /v1/embeddings (and /v1/models, /health) on
127.0.0.1:P (a free port when P is 0) with mean pooling, until killed. Once it
listens it prints its base URL (`http://127.0.0.1:P/v1`) and, with --url-file,
writes it to F (by rename, so a reader never sees half of it).
"""
import argparse
import json
import signal
import sys
import threading
from pathlib import Path


def convert(model_dir: Path, out: Path) -> None:
    # Imported here so that `serve` does not need them loaded.
    import gguf
    import numpy as np
    import onnx
    from onnx import numpy_helper

    config = json.loads((model_dir / "config.json").read_text())
    graph = onnx.load(str(model_dir / "model.onnx")).graph
    init = {t.name: numpy_helper.to_array(t) for t in graph.initializer}

    # The graph dequantizes each int8 weight with Cast then Mul by its scale;
    # follow the same two nodes to get the f32 tensor it multiplies with.
    produced = {}
    for node in graph.node:
        if node.op_type == "Mul" and len(node.input) == 2 and node.input[1].endswith("_scale"):
            q = node.input[1][: -len("_scale")] + "_q"
            if q in init:
                produced[node.output[0]] = init[q].astype(np.float32) * init[node.input[1]].astype(np.float32)

    def tensor(name: str) -> "np.ndarray":
        if name in init:
            return init[name].astype(np.float32)
        return produced[name]

    # Which MatMul weight belongs to which layer and role: the bias added to
    # the MatMul's output names it (the exporter renamed the weights).
    consumers = {}
    for node in graph.node:
        for i in node.input:
            consumers.setdefault(i, []).append(node)
    role_of_bias = {
        "attention.self.query.bias": gguf.MODEL_TENSOR.ATTN_Q,
        "attention.self.key.bias": gguf.MODEL_TENSOR.ATTN_K,
        "attention.self.value.bias": gguf.MODEL_TENSOR.ATTN_V,
        "attention.output.dense.bias": gguf.MODEL_TENSOR.ATTN_OUT,
        "intermediate.dense.bias": gguf.MODEL_TENSOR.FFN_UP,
        "output.dense.bias": gguf.MODEL_TENSOR.FFN_DOWN,
    }
    tensors = {}
    prefix = "inner.encoder.layer."
    for node in graph.node:
        if node.op_type != "MatMul" or node.input[1] not in produced:
            continue
        adds = [n for n in consumers.get(node.output[0], []) if n.op_type == "Add"]
        bias = next((i for n in adds for i in n.input if i.startswith(prefix)), None)
        if bias is None:
            raise SystemExit(f"cannot tell which layer MatMul {node.name} belongs to")
        layer, rest = bias[len(prefix):].split(".", 1)
        role = role_of_bias[rest]
        name = gguf.TENSOR_NAMES[role].format(bid=int(layer))
        # ONNX multiplies x @ W with W as [in, out]; GGUF stores PyTorch's
        # [out, in] orientation.
        tensors[name + ".weight"] = np.ascontiguousarray(produced[node.input[1]].T)
        tensors[name + ".bias"] = tensor(bias)

    norms = {
        "attention.output.LayerNorm": gguf.MODEL_TENSOR.ATTN_OUT_NORM,
        "output.LayerNorm": gguf.MODEL_TENSOR.LAYER_OUT_NORM,
    }
    for layer in range(config["num_hidden_layers"]):
        for hf, role in norms.items():
            name = gguf.TENSOR_NAMES[role].format(bid=layer)
            tensors[name + ".weight"] = tensor(f"{prefix}{layer}.{hf}.weight")
            tensors[name + ".bias"] = tensor(f"{prefix}{layer}.{hf}.bias")
    emb = "inner.embeddings."
    tensors["token_embd.weight"] = tensor(emb + "word_embeddings.weight")
    tensors["position_embd.weight"] = tensor(emb + "position_embeddings.weight")
    tensors["token_types.weight"] = tensor(emb + "token_type_embeddings.weight")
    tensors["token_embd_norm.weight"] = tensor(emb + "LayerNorm.weight")
    tensors["token_embd_norm.bias"] = tensor(emb + "LayerNorm.bias")
    expected = 5 + config["num_hidden_layers"] * 16
    if len(tensors) != expected:
        raise SystemExit(f"found {len(tensors)} tensors in {model_dir / 'model.onnx'}, expected {expected}")

    vocab = json.loads((model_dir / "tokenizer.json").read_text())["model"]["vocab"]
    tokens = [None] * len(vocab)
    for token, i in vocab.items():
        tokens[i] = token
    # llama.cpp's WordPiece tokenizer wants word-initial pieces marked with
    # "▁" and continuation pieces bare, the reverse of BERT's "##" marking
    # (what llama.cpp's own converter does).
    def phantom(token: str) -> str:
        if token.startswith("[") and token.endswith("]"):
            return token
        if token.startswith("##"):
            return token[2:]
        return "\u2581" + token

    specials = {"[PAD]", "[CLS]", "[SEP]", "[MASK]"}
    types = [
        gguf.TokenType.UNKNOWN if t == "[UNK]" else gguf.TokenType.CONTROL if t in specials else gguf.TokenType.NORMAL
        for t in tokens
    ]

    arch = gguf.MODEL_ARCH_NAMES[gguf.MODEL_ARCH.BERT]
    writer = gguf.GGUFWriter(str(out), arch)
    writer.add_name("all-MiniLM-L6-v2")
    writer.add_context_length(config["max_position_embeddings"])
    writer.add_embedding_length(config["hidden_size"])
    writer.add_feed_forward_length(config["intermediate_size"])
    writer.add_block_count(config["num_hidden_layers"])
    writer.add_head_count(config["num_attention_heads"])
    writer.add_layer_norm_eps(config["layer_norm_eps"])
    writer.add_causal_attention(False)
    writer.add_pooling_type(gguf.PoolingType.MEAN)
    writer.add_token_type_count(config["type_vocab_size"])
    writer.add_file_type(gguf.LlamaFileType.ALL_F32)
    writer.add_tokenizer_model("bert")
    writer.add_tokenizer_pre("default")
    writer.add_token_list([phantom(t) for t in tokens])
    writer.add_token_types(types)
    writer.add_unk_token_id(vocab["[UNK]"])
    writer.add_sep_token_id(vocab["[SEP]"])
    writer.add_pad_token_id(vocab["[PAD]"])
    writer.add_mask_token_id(vocab["[MASK]"])
    writer.add_bos_token_id(vocab["[CLS]"])
    writer.add_add_bos_token(True)
    writer.add_add_sep_token(True)
    for name, data in tensors.items():
        writer.add_tensor(name, data)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()


def serve(model: str, port: int, url_file: "Path | None", threads: int, parallel: int) -> int:
    import xllamacpp

    params = xllamacpp.CommonParams()
    params.model.path = model
    params.embedding = True
    params.pooling_type = xllamacpp.llama_pooling_type.LLAMA_POOLING_TYPE_MEAN
    # Each request's passages must fit one micro-batch (BERT attends both
    # ways, so a sequence cannot be split); MiniLM reads 512 tokens at most.
    params.n_parallel = parallel
    params.n_ctx = 512 * parallel
    params.n_batch = 512 * parallel
    params.n_ubatch = 512 * parallel
    params.cpuparams.n_threads = threads
    params.cpuparams_batch.n_threads = threads
    params.hostnames = ["127.0.0.1"]
    params.port = port
    server = xllamacpp.Server(params)
    url = f"{server.listening_address}/v1"
    if url_file is not None:
        partial = url_file.with_name(url_file.name + ".partial")
        partial.write_text(url + "\n")
        partial.replace(url_file)
    print(url, flush=True)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    stop.wait()
    return 0


def main() -> int:
    ap = argparse.ArgumentParser()
    sub = ap.add_subparsers(dest="command", required=True)
    c = sub.add_parser("convert")
    c.add_argument("--model-dir", required=True, type=Path)
    c.add_argument("--out", required=True, type=Path)
    s = sub.add_parser("serve")
    s.add_argument("--model", required=True)
    s.add_argument("--port", type=int, default=0)
    s.add_argument("--url-file", type=Path)
    s.add_argument("--threads", type=int, default=2)
    s.add_argument("--parallel", type=int, default=4)
    args = ap.parse_args()
    if args.command == "convert":
        # Written beside the target and renamed, so an interrupted
        # conversion never leaves a truncated model behind.
        partial = args.out.with_name(args.out.name + ".partial")
        convert(args.model_dir, partial)
        partial.replace(args.out)
        return 0
    return serve(args.model, args.port, args.url_file, args.threads, args.parallel)


if __name__ == "__main__":
    sys.exit(main())
