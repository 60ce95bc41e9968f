//! String-input ONNX encoders: the Universal Sentence Encoder Multilingual.
//!
//! The encoder's graph takes raw UTF-8 strings (a 1-D string tensor
//! `inputs`) and returns one vector per string (`outputs`, `[n, 512]`): its
//! SentencePiece tokenizer runs inside the graph as onnxruntime-extensions
//! custom operators, so there is no Rust-side tokenizer and no pooling here.
//! The session registers the extensions library from the models directory.
//!
//! That library is the Python extension module of the onnxruntime-extensions
//! wheel: it names CPython symbols it never calls outside Python, and ONNX
//! Runtime loads it with immediate binding, so a stub that defines those
//! names (built by `daemon/build.rs`) is loaded first with global binding.

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use mindory_proto::models::{verify_present, verify_string_onnx_model, EmbeddingModel};
use ort::session::Session;
use ort::value::Tensor;

use super::potion::floor_char_boundary;
use super::{loaded, normalize, shared_environment, EmbedError, Embedder};

/// Texts per ONNX Runtime call: one. The graph pads a batch to its longest
/// text, and the padding moves the vectors (cosine 0.997 between a passage
/// embedded in a batch of 32 and alone), so a passage's vector would depend
/// on its batch mates and a query would not match its own passage exactly.
/// Batching buys nothing on CPU either: 64 passages of about 1,000
/// characters took 3.35 s as one batch and 3.41 s one at a time (2 threads).
const MAX_BATCH: usize = 1;

/// Bytes of one text handed to the encoder. Passages are capped far below
/// this by the chunker (256 MiniLM tokens) and queries are short; the cap
/// only bounds the work an absurd input can cause, as in `potion.rs`.
const MAX_INPUT_BYTES: usize = 16 * 1024;

/// The stub that defines the CPython names the extensions library needs.
static PYTHON_STUB: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/libmindory-python-stub.so"));

/// An ONNX graph with string input, e.g. the multilingual Universal Sentence
/// Encoder (int8). One ONNX Runtime session; the engine is not shared between
/// threads (the ingest and query engines each load their own).
pub struct StringOnnxEmbedder {
    model: &'static EmbeddingModel,
    /// The session; `None` after [`Embedder::release`] until the next batch
    /// loads it again from `models_dir`.
    session: Option<Session>,
    models_dir: PathBuf,
    threads: usize,
}

impl StringOnnxEmbedder {
    /// Loads `model` (a catalogued string-input ONNX model) from
    /// `models_dir` with `threads` intra-op threads.
    pub fn load(models_dir: &Path, model: &'static EmbeddingModel, threads: usize) -> Result<Self, EmbedError> {
        Ok(StringOnnxEmbedder {
            model,
            session: Some(Self::session(models_dir, model, threads)?),
            models_dir: models_dir.to_path_buf(),
            threads,
        })
    }

    fn session(models_dir: &Path, model: &'static EmbeddingModel, threads: usize) -> Result<Session, EmbedError> {
        // ONNX Runtime itself is the default model's, always installed.
        let runtime = verify_present(models_dir)?;
        let paths = verify_string_onnx_model(models_dir, model)?;
        let environment = shared_environment(&runtime)?;
        load_python_stub().map_err(|detail| EmbedError::Extensions {
            path: paths.extensions.display().to_string(),
            detail,
        })?;
        let engine = |detail: String| EmbedError::Engine(format!("{}: {detail}", model.name));
        let builder = Session::builder(&environment).map_err(|e| engine(e.to_string()))?;
        let builder = builder
            .with_intra_threads(threads.max(1))
            .map_err(|e| engine(e.to_string()))?
            .with_inter_threads(1)
            .map_err(|e| engine(e.to_string()))?;
        let mut builder = builder
            .with_operator_library(&paths.extensions)
            .map_err(|e| EmbedError::Extensions {
                path: paths.extensions.display().to_string(),
                detail: e.to_string(),
            })?;
        builder.commit_from_file(&paths.onnx).map_err(|e| {
            engine(format!(
                "cannot load {}: {e}; run `mindory models fetch` again",
                paths.onnx.display()
            ))
        })
    }

    /// Whether the session is loaded (false after a release until the next
    /// batch).
    #[cfg(test)]
    pub(crate) fn is_loaded(&self) -> bool {
        self.session.is_some()
    }

    /// Embeds at most [`MAX_BATCH`] texts in one run of the graph.
    fn embed_batch(&mut self, texts: &[&str]) -> Result<Vec<Vec<f32>>, EmbedError> {
        let name = self.model.name;
        let engine = |detail: String| EmbedError::Engine(format!("{name}: {detail}"));
        // Owned strings: ort's string tensors take element types that are
        // `'static` (they are copied into the tensor either way).
        let inputs: Vec<String> = texts
            .iter()
            .map(|t| t[..floor_char_boundary(t, MAX_INPUT_BYTES)].to_string())
            .collect();
        let tensor = Tensor::from_string_array(([inputs.len()], &*inputs)).map_err(|e| engine(e.to_string()))?;
        let (models_dir, model, threads) = (&self.models_dir, self.model, self.threads);
        let session = loaded(&mut self.session, || Self::session(models_dir, model, threads))?;
        let outputs = session
            .run(ort::inputs!["inputs" => tensor])
            .map_err(|e| engine(format!("inference failed: {e}")))?;
        let output = outputs
            .get("outputs")
            .ok_or_else(|| engine("the graph has no `outputs` output".into()))?;
        let (shape, data) = output
            .try_extract_tensor::<f32>()
            .map_err(|e| engine(format!("unexpected output: {e}")))?;
        let dims = self.model.dimensions;
        if shape.len() != 2 || shape[0] as usize != texts.len() || shape[1] as usize != dims {
            return Err(engine(format!("output shape {:?}, expected [{}, {dims}]", &shape[..], texts.len())));
        }
        Ok(data
            .chunks_exact(dims)
            .map(|row| {
                let mut v = row.to_vec();
                // The encoder's vectors are close to unit length but not
                // exactly; the index needs unit vectors (cosine = dot).
                normalize(&mut v);
                if v.iter().all(|x| *x == 0.0) {
                    // A zero vector has no direction; give it the first
                    // axis, deterministic and unit length, as potion does.
                    v[0] = 1.0;
                }
                v
            })
            .collect())
    }
}

impl Embedder for StringOnnxEmbedder {
    fn model_id(&self) -> &str {
        self.model.id
    }

    fn dimensions(&self) -> usize {
        self.model.dimensions
    }

    fn embed(&mut self, texts: &[&str]) -> Result<Vec<Vec<f32>>, EmbedError> {
        let mut out = Vec::with_capacity(texts.len());
        for part in texts.chunks(MAX_BATCH) {
            out.extend(self.embed_batch(part)?);
        }
        Ok(out)
    }

    /// Drops the session and with it ONNX Runtime's arena; the next batch
    /// loads it again (the model's file is read from disk once more).
    fn release(&mut self) {
        self.session = None;
    }
}

/// Loads the CPython symbol stub once per process, with global binding, so
/// that the extensions library's references to CPython resolve against it.
///
/// The loader needs a path, so the stub is written to an anonymous in-memory
/// file (`memfd_create`) and opened through `/proc/self/fd`. A named file in
/// the shared temp directory would let another local user plant a symlink
/// or swap the library between the write and the load, and so run code in
/// the daemon.
fn load_python_stub() -> Result<(), String> {
    static LOADED: OnceLock<Result<(), String>> = OnceLock::new();
    LOADED
        .get_or_init(|| {
            use nix::sys::memfd::{memfd_create, MFdFlags};
            use std::io::Write as _;
            use std::os::fd::AsRawFd as _;
            let fd = memfd_create("mindory-python-stub", MFdFlags::MFD_CLOEXEC)
                .map_err(|e| format!("cannot create an in-memory file for the CPython symbol stub: {e}"))?;
            let mut file = std::fs::File::from(fd);
            file.write_all(PYTHON_STUB)
                .map_err(|e| format!("cannot write the CPython symbol stub: {e}"))?;
            let path: PathBuf = format!("/proc/self/fd/{}", file.as_raw_fd()).into();
            // SAFETY: the stub has no initializers; its functions only abort.
            let library = unsafe {
                libloading::os::unix::Library::open(Some(&path), libloading::os::unix::RTLD_NOW | libloading::os::unix::RTLD_GLOBAL)
            };
            let library = library.map_err(|e| format!("cannot load the CPython symbol stub: {e}"))?;
            // Kept for the life of the process: the custom-op library's
            // symbol references point into it. The mapping outlives the
            // file descriptor, which closes when `file` is dropped.
            std::mem::forget(library);
            Ok(())
        })
        .clone()
}
