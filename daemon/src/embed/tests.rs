//! Tests of the embedding engines on the real model files.
//!
//! The files come from `MINDORY_MODELS_DIR` or the default models directory;
//! `scripts/test` fetches them before any test runs, so a missing file is a
//! failure with instructions, never a skipped test.

use std::path::PathBuf;

use mindory_proto::models::{verify_embedding_model, MANIFEST, MINILM, POTION_BASE_8M, USE_MULTILINGUAL};

use super::*;

/// The models directory, after checking that every catalogued embedding
/// model is installed (panics with the command to run otherwise).
fn models_dir() -> PathBuf {
    let dir = std::env::var_os(mindory_proto::paths::MODELS_DIR_ENV)
        .map(PathBuf::from)
        .unwrap_or_else(mindory_proto::paths::default_models_dir);
    for model in [&MINILM, &POTION_BASE_8M, &USE_MULTILINGUAL] {
        if let Err(e) = verify_embedding_model(&dir, model) {
            panic!(
                "the {} files are not installed in {} ({e}); run `mindory models fetch` \
                 (scripts/test does) or set MINDORY_MODELS_DIR",
                model.name,
                dir.display()
            );
        }
    }
    dir
}

fn potion(threads: usize) -> StaticEmbedder {
    StaticEmbedder::load(&models_dir(), &POTION_BASE_8M, threads).expect("potion-base-8M loads")
}

fn use_multilingual(threads: usize) -> StringOnnxEmbedder {
    StringOnnxEmbedder::load(&models_dir(), &USE_MULTILINGUAL, threads).expect("use-multilingual loads")
}

fn dot(a: &[f32], b: &[f32]) -> f32 {
    a.iter().zip(b).map(|(x, y)| x * y).sum()
}

fn assert_unit(v: &[f32], dims: usize) {
    assert_eq!(v.len(), dims);
    assert!(v.iter().all(|x| x.is_finite()));
    let norm = dot(v, v).sqrt();
    assert!((norm - 1.0).abs() < 1e-4, "norm {norm}");
}

#[test]
fn potion_vectors_are_256_dimensional_unit_vectors() {
    let mut engine = potion(1);
    assert_eq!(engine.model_id(), "minishlab/potion-base-8M");
    assert_eq!(engine.dimensions(), 256);
    let texts = ["The cat sat on the mat.", "Émile's naïve café — 東京 🙂", "x", "  \n\t "];
    let vectors = engine.embed(&texts).unwrap();
    assert_eq!(vectors.len(), texts.len());
    for v in &vectors {
        assert_unit(v, 256);
    }
}

#[test]
fn potion_matches_model2vec() {
    // The first components of model2vec 0.10.0's `StaticModel.encode` on
    // the same files (normalize = true, unknown tokens dropped).
    let expected: [(&str, [f32; 4]); 4] = [
        ("The cat sat on the mat.", [-0.078447, -0.054046, -0.074536, -0.108234]),
        ("A cat was sitting on the rug.", [0.008991, 0.009452, 0.053, 0.061811]),
        (
            "Quarterly revenue grew by eight percent.",
            [0.033876, 0.146583, 0.033955, -0.002438],
        ),
        ("Émile's naïve café — 東京 🙂", [0.037245, -0.092367, -0.095966, 0.035509]),
    ];
    let mut engine = potion(1);
    for (text, head) in expected {
        let v = engine.embed(&[text]).unwrap().remove(0);
        for (got, want) in v.iter().zip(head) {
            assert!((got - want).abs() < 1e-5, "{text:?}: {:?} != {head:?}", &v[..4]);
        }
    }
}

#[test]
fn potion_scores_a_paraphrase_above_an_unrelated_sentence() {
    let mut engine = potion(1);
    let v = engine
        .embed(&[
            "The cat sat on the mat.",
            "A cat was sitting on the rug.",
            "Quarterly revenue grew by eight percent.",
            "How do I install a package with dpkg?",
            "Installing a Debian package file using dpkg -i.",
        ])
        .unwrap();
    let (para, unrelated) = (dot(&v[0], &v[1]), dot(&v[0], &v[2]));
    assert!(para > unrelated + 0.2, "paraphrase {para}, unrelated {unrelated}");
    // A question scores its answer above an unrelated sentence too.
    assert!(dot(&v[3], &v[4]) > dot(&v[3], &v[2]) + 0.2);
}

#[test]
fn potion_is_deterministic_and_keeps_batch_order() {
    let texts: Vec<String> = (0..97)
        .map(|i| format!("Passage {i}: the {} of the {} river.", ["source", "mouth", "delta"][i % 3], i * 7))
        .collect();
    let refs: Vec<&str> = texts.iter().map(String::as_str).collect();
    let mut one = potion(1);
    let singles: Vec<Vec<f32>> = refs.iter().map(|t| one.embed(&[t]).unwrap().remove(0)).collect();
    // The ingest engine splits a batch across threads: same vectors, same order.
    let mut many = one.with_threads(3);
    assert_eq!(many.embed(&refs).unwrap(), singles);
    assert_eq!(one.embed(&refs).unwrap(), singles);
    assert_eq!(one.embed(&refs[..1]).unwrap()[0], singles[0]);
    assert_ne!(singles[0], singles[1]);
}

#[test]
fn potion_embeds_texts_without_known_tokens_as_the_unknown_token() {
    let mut engine = potion(2);
    let v = engine.embed(&["", "   ", "🙂🙂", "The cat sat."]).unwrap();
    for e in &v {
        assert_unit(e, 256);
    }
    // Deterministic and the same for every text with nothing recognisable.
    assert_eq!(v[0], v[1]);
    assert_eq!(v[0], v[2]);
    assert_ne!(v[0], v[3]);
}

#[test]
fn potion_reads_at_most_its_token_cap() {
    let mut engine = potion(1);
    let head = "river bank ".repeat(MAX_STATIC_TOKENS); // two tokens a repeat
    let long = format!("{head} quarterly revenue grew by eight percent");
    let v = engine.embed(&[head.as_str(), long.as_str()]).unwrap();
    assert_unit(&v[1], 256);
    assert_eq!(v[0], v[1], "tokens past the cap must not count");
    // A megabyte of text costs no more than the first part of it.
    let huge = "word ".repeat(200_000);
    assert_unit(&engine.embed(&[huge.as_str()]).unwrap()[0], 256);
}

#[test]
fn engines_load_by_name_or_id_and_unknown_names_say_what_exists() {
    let dir = models_dir();
    let by_name = load_engine("potion-base-8M", &dir, 1).unwrap();
    let by_id = load_engine("minishlab/potion-base-8M", &dir, 1).unwrap();
    assert_eq!(by_name.model_id(), by_id.model_id());
    assert_eq!(by_name.dimensions(), 256);
    let Err(err) = load_engine("glove", &dir, 1) else {
        panic!("an unknown model loaded")
    };
    let err = err.to_string();
    assert!(err.contains("potion-base-8M") && err.contains("all-MiniLM-L6-v2"), "{err}");
}

#[test]
fn the_chunking_counter_is_minilms_exact_tokenizer() {
    let dir = models_dir();
    let fast = FastEmbedder::load(&dir, 1).unwrap();
    let reference = TokenCounter::new(fast.tokenizer().expect("a loaded session"));
    let counter = TokenCounter::minilm(&dir).unwrap();
    for text in [
        "",
        "The cat sat on the mat.",
        "[CLS] literal [SEP] and [MASK] markers, [UNK] too",
        "Émile's naïve café — 東京 🙂 dpkg-deb --build ./pkg",
        &"a long passage of ordinary words ".repeat(40),
    ] {
        assert_eq!(counter.count(text), reference.count(text), "{text:?}");
    }
}

#[tokio::test]
async fn a_potion_handle_embeds_and_still_counts_minilm_tokens() {
    let dir = models_dir();
    let handle = EmbedHandle::start("potion-base-8M", &dir, 2).unwrap();
    assert_eq!(handle.model_id(), POTION_BASE_8M.id);
    assert_eq!(handle.dimensions(), 256);
    let minilm = TokenCounter::minilm(&dir).unwrap();
    let text = "Passage boundaries never depend on the embedding model.";
    assert_eq!(handle.token_counter().count(text), minilm.count(text));
    let passages = handle.embed_passages(vec![text.into(), "Another one.".into()]).await.unwrap();
    let query = handle.embed_query(text).await.unwrap();
    assert_eq!(passages.len(), 2);
    assert_eq!(passages[0], query, "the ingest and query engines share one table");
    assert_eq!(handle.embedded_count(), 2);
}

/// A panic in an engine's thread fails the batch in flight with an error
/// (no hang), the thread restarts, and the next batch gets the same vectors
/// as an engine that never panicked.
///
/// The panic point is armed by an environment variable and fires once per
/// process, so the test runs itself again in a child process with the
/// variable set: other tests, which `cargo test` runs in this same process,
/// never meet the armed point.
#[cfg(feature = "test-hooks")]
#[test]
fn a_panicking_engine_thread_fails_its_batch_and_restarts() {
    use crate::test_hooks::PANIC_AT_ENV;
    const TEST: &str = "embed::tests::a_panicking_engine_thread_fails_its_batch_and_restarts";
    if std::env::var(PANIC_AT_ENV).as_deref() != Ok("embed-batch") {
        let out = std::process::Command::new(std::env::current_exe().expect("the test binary"))
            .args([TEST, "--exact", "--nocapture", "--test-threads=1"])
            .env(PANIC_AT_ENV, "embed-batch")
            .output()
            .expect("run the test binary again");
        let (stdout, stderr) = (String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
        assert!(
            out.status.success() && stdout.contains("1 passed"),
            "the run with {PANIC_AT_ENV}=embed-batch failed:\n{stdout}\n{stderr}"
        );
        return;
    }
    let dir = models_dir();
    let texts = ["The cat sat on the mat.", "Quarterly revenue grew by eight percent."];
    let expected = potion(1).embed(&texts).unwrap();
    let batch = || texts.map(String::from).to_vec();
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    runtime.block_on(async {
        let handle = EmbedHandle::start("potion-base-8M", &dir, 2).unwrap();
        let err = handle.embed_passages(batch()).await.expect_err("the armed batch fails");
        assert!(matches!(&err, EmbedError::Crashed(what) if what.contains("embed-batch")), "{err}");
        assert!(err.to_string().contains("try again"), "{err}");
        assert_eq!(
            handle.embed_passages(batch()).await.unwrap(),
            expected,
            "the restarted thread embeds as before"
        );
        assert_eq!(handle.embed_query(texts[1]).await.unwrap(), expected[1]);
        assert_eq!(handle.embedded_count(), 2, "only the batch that succeeded counts");
    });
}

/// An engine whose ingest batches always panic.
struct PanicsOnPassages;

impl Embedder for PanicsOnPassages {
    fn model_id(&self) -> &str {
        "test/panics"
    }

    fn dimensions(&self) -> usize {
        1
    }

    fn embed(&mut self, texts: &[&str]) -> Result<Vec<Vec<f32>>, EmbedError> {
        if texts.first() == Some(&"panic") {
            panic!("this engine always panics");
        }
        Ok(texts.iter().map(|_| vec![1.0]).collect())
    }
}

/// Each panicking batch fails with an error while the thread restarts; past
/// the restart budget the thread stays down and requests fail at once
/// instead of hanging, while the other engine's thread keeps serving.
#[tokio::test]
async fn an_engine_thread_restarts_within_its_budget_then_stops() {
    let model = EmbedModel::spawn(Box::new(PanicsOnPassages), Box::new(PanicsOnPassages), Arc::new(AtomicU64::new(0)));
    assert_eq!(model.embed_passages(vec!["fine".into()]).await.unwrap(), [[1.0]]);
    for _ in 0..=RESTART_BUDGET {
        let err = model.embed_passages(vec!["panic".into()]).await.unwrap_err();
        assert!(matches!(&err, EmbedError::Crashed(what) if what.contains("always panics")), "{err}");
    }
    let err = model.embed_passages(vec!["fine".into()]).await.unwrap_err();
    assert!(matches!(err, EmbedError::Stopped), "{err}");
    assert_eq!(model.embed_query("fine").await.unwrap(), [1.0]);
}

/// The fast WordPiece count equals the tokenizer's own, on whole books in
/// English, German and Chinese, a technical manual's text, and edge cases
/// (accents, ligatures, emoji, control characters, long words, special
/// tokens typed in the text).
#[test]
fn fast_token_counts_equal_the_tokenizers() {
    let counter = TokenCounter::minilm(&models_dir()).expect("MiniLM tokenizer");
    assert!(counter.fast.is_some(), "MiniLM's tokenizer is a BERT WordPiece pipeline");
    let corpus = std::env::var_os("MINDORY_CORPUS")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../shared/corpus"));
    let mut texts: Vec<String> = Vec::new();
    for file in ["txt/prideprejudice.txt", "txt/CalltoArms.txt", "qa/R-FAQ.pdf.txt"] {
        let text = std::fs::read_to_string(corpus.join(file)).unwrap_or_else(|e| panic!("{file}: {e}"));
        texts.extend(text.split("\n\n").map(str::to_string));
    }
    for fixture in std::fs::read_dir(PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../tests/fixtures")).unwrap() {
        let path = fixture.unwrap().path();
        if let Ok(text) = std::fs::read_to_string(&path) {
            texts.extend(text.split("\n\n").map(str::to_string));
        }
    }
    texts.extend(
        [
            "Café naïve façade — “quoted” ‘single’ … ﬁne ligature, Ångström, İstanbul, straße",
            "Über die Größe der Äpfel: Müller sagte «Nein»; ¿Qué? ¡Sí!",
            "emoji 😀👍🏽 and math ∑∫√ and arrows → ⇒ and © ® ™ § ¶ °",
            "control\u{0}chars\u{7}here\u{200b}zero\u{feff}width\u{a0}nbsp\ttab\r\nnewline\u{85}nel",
            "Supercalifragilisticexpialidocious_and_an_overlong_identifier_that_goes_on_and_on_and_on_and_on_and_on_and_on_end",
            "typed tokens: [CLS] [SEP] [MASK] [PAD] [UNK] and [cls] lower",
            "ﾊﾝｶｸ half-width katakana, 한국어 텍스트, ελληνικά, русский текст, עברית, العربية",
            "lapply(X, FUN, ...) returns a list; sapply(x, f, simplify = TRUE) `code` $x^2$ a_b",
            "",
            "   ",
        ]
        .map(str::to_string),
    );
    let mut chars = 0;
    for text in &texts {
        chars += text.len();
        assert_eq!(counter.count(text), counter.exact_count(text), "{text:?}");
    }
    assert!(chars > 1_000_000, "compared only {chars} bytes of text");
}

#[test]
fn use_multilingual_vectors_are_512_dimensional_unit_vectors() {
    let mut engine = use_multilingual(1);
    assert_eq!(engine.model_id(), USE_MULTILINGUAL.id);
    assert_eq!(engine.dimensions(), 512);
    let long = "a long passage of ordinary words ".repeat(2_000);
    let texts = [
        "The cat sat on the mat.",
        "猫坐在垫子上。",
        "Émile's naïve café — 東京 🙂",
        "x",
        "",
        "  \n\t ",
        &long,
    ];
    let vectors = engine.embed(&texts).unwrap();
    assert_eq!(vectors.len(), texts.len());
    for v in &vectors {
        assert_unit(v, 512);
    }
}

#[test]
fn use_multilingual_pairs_english_and_chinese_translations() {
    let mut engine = use_multilingual(2);
    // Each English sentence and its Chinese translation.
    let pairs = [
        ("The cat sat on the mat.", "猫坐在垫子上。"),
        ("Quarterly revenue grew by eight percent.", "季度收入增长了百分之八。"),
        ("How do I install a software package?", "我如何安装一个软件包？"),
        ("The river floods the valley every spring.", "每年春天河水都会淹没山谷。"),
        ("She wrote a long letter to her sister.", "她给她的姐姐写了一封长信。"),
    ];
    let texts: Vec<&str> = pairs.iter().flat_map(|(en, zh)| [*en, *zh]).collect();
    let v = engine.embed(&texts).unwrap();
    for (i, (en, zh)) in pairs.iter().enumerate() {
        let (e, z) = (&v[2 * i], &v[2 * i + 1]);
        let own = dot(e, z);
        for j in (0..pairs.len()).filter(|j| *j != i) {
            // Cross-lingual both ways: the Chinese sentence is nearer its own
            // English translation than any other English sentence, and the
            // English one nearer its Chinese translation than any other.
            let other_en = dot(z, &v[2 * j]);
            let other_zh = dot(e, &v[2 * j + 1]);
            assert!(own > other_en + 0.2, "{zh:?}: own {own}, {:?} {other_en}", pairs[j].0);
            assert!(own > other_zh + 0.2, "{en:?}: own {own}, {:?} {other_zh}", pairs[j].1);
        }
        assert!(own > 0.5, "{en:?} / {zh:?}: {own}");
    }
    // Monolingual Chinese: a paraphrase above an unrelated sentence.
    let zh = engine
        .embed(&["猫坐在垫子上。", "一只猫正坐在地毯上。", "季度收入增长了百分之八。"])
        .unwrap();
    assert!(dot(&zh[0], &zh[1]) > dot(&zh[0], &zh[2]) + 0.2);
}

#[test]
fn use_multilingual_is_deterministic_and_keeps_batch_order() {
    let texts: Vec<String> = (0..45)
        .map(|i| match i % 3 {
            0 => format!("Passage {i}: the source of the {} river.", i * 7),
            1 => format!("第{i}段：这条河的河口在{}公里外。", i * 7),
            _ => format!("Abschnitt {i}: das Delta des Flusses, {} Kilometer lang.", i * 7),
        })
        .collect();
    let refs: Vec<&str> = texts.iter().map(String::as_str).collect();
    let mut one = use_multilingual(1);
    let singles: Vec<Vec<f32>> = refs.iter().map(|t| one.embed(&[t]).unwrap().remove(0)).collect();
    // A batch on two threads: the same vectors in the same order, whatever
    // the batch (each text runs through the graph alone, see MAX_BATCH).
    let mut many = use_multilingual(2);
    let batched = many.embed(&refs).unwrap();
    assert_eq!(batched, singles);
    assert_eq!(many.embed(&refs).unwrap(), batched);
    assert_eq!(one.embed(&refs[..1]).unwrap()[0], singles[0]);
    assert!(dot(&singles[0], &singles[1]) < 0.9999);
}

#[tokio::test]
async fn a_use_multilingual_handle_loads_by_name_and_counts_minilm_tokens() {
    let dir = models_dir();
    let by_id = load_engine(USE_MULTILINGUAL.id, &dir, 1).unwrap();
    assert_eq!(by_id.dimensions(), 512);
    let handle = EmbedHandle::start("use-multilingual", &dir, 2).unwrap();
    assert_eq!(handle.model_id(), USE_MULTILINGUAL.id);
    assert_eq!(handle.dimensions(), 512);
    let text = "段落的边界从不取决于嵌入模型。";
    assert_eq!(handle.token_counter().count(text), TokenCounter::minilm(&dir).unwrap().count(text));
    let passages = handle.embed_passages(vec![text.into(), "Another one.".into()]).await.unwrap();
    let query = handle.embed_query(text).await.unwrap();
    assert_eq!(passages[0], query, "the ingest and query engines agree");
}

#[test]
fn a_missing_extensions_library_names_the_file_and_the_command() {
    let dir = tempfile::tempdir().unwrap();
    let installed = models_dir();
    // Everything but the custom-op library, linked from the real models dir.
    let without_library = USE_MULTILINGUAL.files.iter().enumerate().filter(|(i, _)| *i != 1).map(|(_, f)| f);
    for file in MANIFEST.iter().chain(without_library) {
        let dest = dir.path().join(file.dest);
        std::fs::create_dir_all(dest.parent().unwrap()).unwrap();
        std::os::unix::fs::symlink(installed.join(file.dest), &dest).unwrap();
    }
    let Err(err) = load_engine("use-multilingual", dir.path(), 1) else {
        panic!("loaded without the extensions library")
    };
    let err = err.to_string();
    assert!(err.contains("libortextensions.so") && err.contains("mindory models fetch"), "{err}");
    // A file that is there but is no loadable library.
    let fake = dir.path().join(USE_MULTILINGUAL.files[1].dest);
    std::fs::create_dir_all(fake.parent().unwrap()).unwrap();
    std::fs::write(&fake, vec![0u8; USE_MULTILINGUAL.files[1].size as usize]).unwrap();
    let Err(err) = load_engine("use-multilingual", dir.path(), 1) else {
        panic!("loaded a library of zeros")
    };
    let err = err.to_string();
    assert!(
        err.contains("onnxruntime-extensions") && err.contains("libortextensions.so") && err.contains("mindory models fetch"),
        "{err}"
    );
}

/// A released MiniLM session loads again on the next batch and embeds
/// exactly as before.
#[test]
fn a_released_session_loads_again_and_embeds_the_same() {
    let texts = ["The cat sat on the mat.", "Quarterly revenue grew by eight percent."];
    let mut fast = FastEmbedder::load(&models_dir(), 1).unwrap();
    let before = fast.embed(&texts).unwrap();
    fast.release();
    assert!(fast.tokenizer().is_none(), "the session is gone");
    assert_eq!(fast.embed(&texts).unwrap(), before);
    assert!(fast.tokenizer().is_some(), "the batch loaded it again");
}

/// The multilingual encoder's session is released and loaded again the
/// same way, with the same vectors.
#[test]
fn a_released_use_multilingual_session_loads_again_and_embeds_the_same() {
    let texts = ["The cat sat on the mat.", "猫坐在垫子上。"];
    let mut engine = use_multilingual(1);
    let before = engine.embed(&texts).unwrap();
    engine.release();
    assert!(!engine.is_loaded(), "the session is gone");
    assert_eq!(engine.embed(&texts).unwrap(), before);
    assert!(engine.is_loaded(), "the batch loaded it again");
}

/// Counts the releases of the engine it wraps.
struct CountsReleases {
    inner: FastEmbedder,
    releases: Arc<AtomicU64>,
}

impl Embedder for CountsReleases {
    fn model_id(&self) -> &str {
        self.inner.model_id()
    }

    fn dimensions(&self) -> usize {
        self.inner.dimensions()
    }

    fn embed(&mut self, texts: &[&str]) -> Result<Vec<Vec<f32>>, EmbedError> {
        self.inner.embed(texts)
    }

    fn release(&mut self) {
        self.releases.fetch_add(1, Ordering::SeqCst);
        self.inner.release();
    }
}

/// An engine thread with an idle limit releases its engine once per idle
/// stretch: a fresh engine once, then once after each batch (not again while
/// nothing comes), and a batch after a release is served with the same
/// vectors.
#[tokio::test]
async fn an_idle_engine_thread_releases_its_memory_and_serves_again() {
    let texts = vec![
        "The cat sat on the mat.".to_string(),
        "Quarterly revenue grew by eight percent.".to_string(),
    ];
    let releases = Arc::new(AtomicU64::new(0));
    let engine = CountsReleases {
        inner: FastEmbedder::load(&models_dir(), 1).unwrap(),
        releases: releases.clone(),
    };
    let idle = Duration::from_millis(300);
    let queue = spawn_engine_thread("test-embed-idle", Box::new(engine), None, Some(idle));
    let released_times = |n: u64| {
        let releases = releases.clone();
        async move {
            let deadline = std::time::Instant::now() + Duration::from_secs(30);
            while releases.load(Ordering::SeqCst) < n {
                assert!(std::time::Instant::now() < deadline, "no release {n} within 30 s of idleness");
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
    };
    // A fresh engine holds its session: it lets it go after one idle limit.
    released_times(1).await;
    let first = submit(&queue, texts.clone()).await.unwrap();
    released_times(2).await;
    // Several idle limits later, still two releases: a released engine waits
    // for the next batch without a timer.
    tokio::time::sleep(idle * 4).await;
    assert_eq!(releases.load(Ordering::SeqCst), 2);
    assert_eq!(submit(&queue, texts.clone()).await.unwrap(), first, "served after a release");
    released_times(3).await;
}
