//! Tests of the keyword index on real tantivy indexes in temp directories:
//! stemming, phrases, CJK, removals, persistence of the commit payload,
//! rebuild against incremental, damage, punctuation, book filters, the
//! start-up check against a store, and the actor.

use std::path::Path;
use std::sync::Arc;
use std::time::Instant;

use super::*;
use crate::store::chunk_id;

fn doc(book: u64, ordinal: u32, language: &str, text: &str) -> KeywordDoc {
    KeywordDoc {
        chunk_id: chunk_id(book, ordinal),
        book_id: book,
        language: language.into(),
        text: text.into(),
    }
}

fn ids(hits: &[(u64, f32)]) -> Vec<u64> {
    hits.iter().map(|h| h.0).collect()
}

fn open(dir: &Path) -> KeywordIndex {
    KeywordIndex::open(dir).unwrap()
}

/// Lu Xun, preface to 呐喊 (1922), public domain: a paragraph with the
/// sentence the CJK tests look for, and two unrelated paragraphs.
const LU_XUN: &str = "我在年青时候也曾经做过许多梦，后来大半忘却了，但自己也并不以为可惜。\
所谓回忆者，虽说可以使人欢欣，有时也不免使人寂寞，使精神的丝缕还牵着已逝的寂寞的时光，\
又有什么意味呢，而我偏苦于不能全忘却，这不能全忘的一部分，到现在便成了《呐喊》的来由。";
const CHINESE_OTHER_1: &str = "我有四年多，曾经常常，——几乎是每天，出入于质铺和药店里，年纪可是忘却了，\
总之是药店的柜台正和我一样高，质铺的是比我高一倍，我从一倍高的柜台外送上衣服或首饰去。";
const CHINESE_OTHER_2: &str = "在这时候，我那时候也曾做过一个梦，梦里许多人在年青的时候都很快乐，\
后来我们都长大了，这些事情大半也就忘了。";

#[test]
fn english_stemming_finds_other_forms() {
    let dir = tempfile::tempdir().unwrap();
    let index = open(dir.path());
    index
        .apply(
            &[],
            &[
                doc(1, 0, "en", "She loves the sea more than anything."),
                doc(1, 1, "en", "The harbour was quiet at dawn."),
                doc(2, 0, "EN-GB", "Running through the fields, they laughed."),
            ],
            1,
        )
        .unwrap();
    assert_eq!(ids(&index.search("loved", 10, &[]).unwrap()), [chunk_id(1, 0)]);
    assert_eq!(ids(&index.search("runs", 10, &[]).unwrap()), [chunk_id(2, 0)]);
    assert_eq!(index.languages_in_use(), ["en"]);
    assert!(index.search("", 10, &[]).unwrap().is_empty());
    assert!(index.search("loved", 0, &[]).unwrap().is_empty());
}

#[test]
fn a_quoted_phrase_must_appear_exactly() {
    let dir = tempfile::tempdir().unwrap();
    let index = open(dir.path());
    index
        .apply(
            &[],
            &[
                doc(1, 0, "en", "An old man walked slowly by the sea."),
                doc(1, 1, "en", "The man was old, and the sea was calm."),
                doc(1, 2, "en", "Old men and the sea: a man's story."),
            ],
            1,
        )
        .unwrap();
    assert_eq!(ids(&index.search("\"old man\"", 10, &[]).unwrap()), [chunk_id(1, 0)]);
    assert_eq!(ids(&index.search("sea \"Old Man\"", 10, &[]).unwrap()), [chunk_id(1, 0)]);
    // Phrases are not stemmed: "old men" is not "old man".
    assert_eq!(ids(&index.search("\"old men\"", 10, &[]).unwrap()), [chunk_id(1, 2)]);
    // Without quotes every passage with any of the words matches.
    assert_eq!(index.search("old man", 10, &[]).unwrap().len(), 3);
    // An unbalanced quote is plain words, not a phrase.
    assert_eq!(index.search("sea \"calm old", 10, &[]).unwrap().len(), 3);
}

#[test]
fn chinese_substrings_and_phrases_are_found() {
    let dir = tempfile::tempdir().unwrap();
    let index = open(dir.path());
    index
        .apply(
            &[],
            &[
                doc(1, 0, "", LU_XUN),
                doc(1, 1, "", CHINESE_OTHER_1),
                doc(2, 0, "zh-CN", CHINESE_OTHER_2),
            ],
            1,
        )
        .unwrap();
    // Chinese has no stemmer, detected or tagged.
    assert_eq!(index.languages_in_use(), ["unstemmed"]);
    let hits = index.search("年青时候也曾经做过", 10, &[]).unwrap();
    assert_eq!(hits[0].0, chunk_id(1, 0), "{hits:?}");
    let hits = index.search("做过许多梦", 10, &[]).unwrap();
    assert_eq!(hits[0].0, chunk_id(1, 0), "{hits:?}");
    // As a phrase only the passage that has it verbatim matches; the
    // distractor has every bigram but one, and not in this order.
    assert_eq!(
        ids(&index.search("\"年青时候也曾经做过许多梦\"", 10, &[]).unwrap()),
        [chunk_id(1, 0)]
    );
    assert_eq!(
        ids(&index.phrase_search("但自己也并不以为可惜", 10, &[]).unwrap()),
        [chunk_id(1, 0)]
    );
    assert!(index.phrase_search("许多梦在年青", 10, &[]).unwrap().is_empty());
}

#[test]
fn removal_by_chunk_id() {
    let dir = tempfile::tempdir().unwrap();
    let index = open(dir.path());
    let docs = [
        doc(1, 0, "en", "the lighthouse keeper"),
        doc(1, 1, "en", "another lighthouse far away"),
        doc(2, 0, "en", "no such tower here"),
    ];
    index.apply(&[], &docs, 1).unwrap();
    assert_eq!(index.len(), 3);
    index.apply(&[chunk_id(1, 0), chunk_id(9, 9)], &[], 2).unwrap();
    assert_eq!(ids(&index.search("lighthouse", 10, &[]).unwrap()), [chunk_id(1, 1)]);
    assert_eq!((index.len(), index.committed_count()), (2, Some(2)));
    // Adds are upserts: re-adding an existing id replaces it.
    index.apply(&[], &[doc(1, 1, "en", "a windmill now")], 3).unwrap();
    assert!(index.search("lighthouse", 10, &[]).unwrap().is_empty());
    assert_eq!(ids(&index.search("windmill", 10, &[]).unwrap()), [chunk_id(1, 1)]);
    assert_eq!((index.len(), index.committed_count()), (2, Some(2)));
}

#[test]
fn the_generation_survives_reopening() {
    let dir = tempfile::tempdir().unwrap();
    {
        let index = open(dir.path());
        assert_eq!(index.committed_generation(), None);
        index.apply(&[], &[doc(1, 0, "en", "first words")], 5).unwrap();
        index.apply(&[], &[doc(1, 1, "en", "second words")], 7).unwrap();
        // A late, older generation never moves it back.
        index.apply(&[], &[], 6).unwrap();
        assert_eq!(index.committed_generation(), Some(7));
    }
    let index = open(dir.path());
    assert_eq!(index.committed_generation(), Some(7));
    assert_eq!((index.len(), index.committed_count()), (2, Some(2)));
    assert_eq!(index.search("second", 10, &[]).unwrap().len(), 1);
    assert_eq!(index.languages_in_use(), ["en"], "the fields in use are found again on open");
}

fn library() -> Vec<Vec<KeywordDoc>> {
    vec![
        vec![
            doc(1, 0, "en", "The river bends around the old mill, where children swim in summer."),
            doc(1, 1, "en", "In winter the mill wheel freezes and the river runs silent."),
        ],
        vec![
            doc(
                2,
                0,
                "",
                "Die Kinder spielten am Fluss, während die Mühle sich langsam drehte und das Wasser rauschte.",
            ),
            doc(2, 1, "", "Im Winter gefror das Mühlrad, und der Fluss lag still unter dem Eis."),
        ],
        vec![doc(3, 0, "", LU_XUN), doc(3, 1, "", CHINESE_OTHER_1)],
    ]
}

#[test]
fn rebuild_equals_incremental() {
    let (a, b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let incremental = open(a.path());
    for (generation, book) in library().iter().enumerate() {
        incremental.apply(&[], book, generation as u64 + 1).unwrap();
    }
    let rebuilt = open(b.path());
    rebuilt.apply(&[], &[doc(9, 0, "en", "something to be replaced")], 1).unwrap();
    let count = rebuilt.rebuild(library().into_iter().flatten(), 3).unwrap();
    assert_eq!(count, 6);
    assert_eq!(rebuilt.committed_generation(), incremental.committed_generation());
    assert_eq!((rebuilt.len(), rebuilt.committed_count()), (6, Some(6)));
    assert_eq!(rebuilt.languages_in_use(), incremental.languages_in_use());
    assert_eq!(rebuilt.languages_in_use(), ["unstemmed", "en", "de"]);
    for query in [
        "river mill",
        "Fluss Mühle",
        "Kinder",
        "\"the river\"",
        "年青时候",
        "replaced",
        "winter",
    ] {
        let (x, y) = (incremental.search(query, 10, &[]).unwrap(), rebuilt.search(query, 10, &[]).unwrap());
        assert_eq!(ids(&x), ids(&y), "{query}");
        for (p, q) in x.iter().zip(&y) {
            assert!((p.1 - q.1).abs() < 1e-4, "{query}: {x:?} vs {y:?}");
        }
    }
}

#[test]
fn a_failed_rebuild_commits_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let index = open(dir.path());
    index.apply(&[], &[doc(1, 0, "en", "the original passage")], 3).unwrap();
    let docs = vec![
        Ok(doc(2, 0, "en", "a replacement passage")),
        Err(KeywordError::Unavailable("the store went away".into())),
    ];
    assert!(index.rebuild_fallible(docs.into_iter(), 9).is_err());
    assert_eq!((index.len(), index.committed_generation()), (1, Some(3)));
    assert!(index.search("replacement", 10, &[]).unwrap().is_empty());
    // The writer still works afterwards, and nothing half-done leaks into
    // the next commit.
    index.apply(&[], &[doc(1, 1, "en", "another passage")], 4).unwrap();
    assert_eq!(ids(&index.search("passage", 10, &[]).unwrap()).len(), 2);
    assert!(index.search("replacement", 10, &[]).unwrap().is_empty());
}

#[test]
fn a_damaged_directory_fails_to_open() {
    let dir = tempfile::tempdir().unwrap();
    {
        let index = open(dir.path());
        index.apply(&[], &[doc(1, 0, "en", "some text")], 1).unwrap();
    }
    std::fs::write(dir.path().join("meta.json"), b"\x00garbage{{{").unwrap();
    match KeywordIndex::open(dir.path()) {
        Err(KeywordError::Open { .. }) => {}
        Err(e) => panic!("expected an open error, got {e}"),
        Ok(_) => panic!("a damaged index opened"),
    }
}

#[test]
fn punctuation_is_never_syntax() {
    let dir = tempfile::tempdir().unwrap();
    let index = open(dir.path());
    index
        .apply(
            &[],
            &[
                doc(
                    1,
                    0,
                    "en",
                    "Running apt-get install foo prints E: Unable to locate package foo when the index is stale.",
                ),
                doc(1, 1, "en", "A package manager installs each package it can locate in its sources."),
                doc(
                    1,
                    2,
                    "en",
                    "lapply(x, f) returns a list of the same length as x, each element the result of f.",
                ),
                doc(1, 3, "en", "To apply a function over a list, the apply family is handy."),
            ],
            1,
        )
        .unwrap();
    let hits = index.search("E: Unable to locate package", 10, &[]).unwrap();
    assert_eq!(hits[0].0, chunk_id(1, 0), "{hits:?}");
    let hits = index.search("lapply(x, f)", 10, &[]).unwrap();
    assert_eq!(hits[0].0, chunk_id(1, 2), "{hits:?}");
    for query in [
        "a AND OR NOT (",
        "field:value",
        "*",
        "\"",
        "\"\"",
        "[1 TO 5]",
        "-x +y ~2 ^3",
        "\\",
        "'",
        "::",
        "{}",
    ] {
        index.search(query, 10, &[]).unwrap();
        index.phrase_search(query, 10, &[]).unwrap();
    }
}

#[test]
fn phrase_search_finds_the_verbatim_sentence() {
    let dir = tempfile::tempdir().unwrap();
    let index = open(dir.path());
    index
        .apply(
            &[],
            &[
                doc(1, 0, "en", "The cat sat on the mat while the dog slept."),
                doc(1, 1, "en", "On the mat the cat sat, while the dog slept."),
                doc(1, 2, "en", "While the dog slept, the cat sat on the mat."),
                doc(1, 3, "en", "The dog sat on the mat while the cat slept."),
            ],
            1,
        )
        .unwrap();
    assert_eq!(
        ids(&index.phrase_search("the cat sat on the mat while the dog slept", 10, &[]).unwrap()),
        [chunk_id(1, 0)]
    );
    // Punctuation and case do not matter; word order does.
    let hits = index
        .phrase_search("The cat sat on the mat, while the dog slept.", 10, &[])
        .unwrap();
    assert_eq!(ids(&hits), [chunk_id(1, 0)]);
    assert!(index.phrase_search("", 10, &[]).unwrap().is_empty());
    assert_eq!(index.phrase_search("mat", 10, &[]).unwrap().len(), 4);
}

#[test]
fn the_book_filter_restricts_hits() {
    let dir = tempfile::tempdir().unwrap();
    let index = open(dir.path());
    index
        .apply(
            &[],
            &[
                doc(1, 0, "en", "a whale in the ocean"),
                doc(2, 0, "en", "a whale in the bay, a whale"),
                doc(3, 0, "en", "no cetaceans here"),
            ],
            1,
        )
        .unwrap();
    assert_eq!(index.search("whale", 10, &[]).unwrap().len(), 2);
    assert_eq!(ids(&index.search("whale", 10, &[1]).unwrap()), [chunk_id(1, 0)]);
    assert_eq!(ids(&index.search("whale", 10, &[1, 3]).unwrap()), [chunk_id(1, 0)]);
    assert!(index.search("whale", 10, &[3]).unwrap().is_empty());
    assert_eq!(ids(&index.phrase_search("a whale", 10, &[2]).unwrap()), [chunk_id(2, 0)]);
    // The filter scores nothing: the same passage scores the same.
    let all = index.search("whale", 10, &[]).unwrap();
    let one = index.search("whale", 10, &[1]).unwrap();
    let score = all.iter().find(|h| h.0 == chunk_id(1, 0)).unwrap().1;
    assert!((one[0].1 - score).abs() < 1e-6);
}

#[test]
fn start_up_checks_against_the_store() {
    let data = tempfile::tempdir().unwrap();
    let db = data.path().join("mindory.redb");
    crate::store::seed_synthetic_library(&db, "m", 3, 5, 4, 1, &[]).unwrap();
    let store = StoreReader::open(&db, "m").unwrap();

    let (index, origin) = open_or_rebuild(data.path(), &store).unwrap();
    assert!(matches!(origin, KeywordOrigin::Rebuilt(_)), "{origin:?}");
    assert_eq!(index.len(), 15);
    assert_eq!(index.committed_generation(), Some(store.generation().unwrap()));
    let hits = index.search("\"passage 3 of book 1\"", 10, &[]).unwrap();
    assert_eq!(hits.len(), 1);
    drop(index);

    let (index, origin) = open_or_rebuild(data.path(), &store).unwrap();
    assert_eq!(origin, KeywordOrigin::Loaded);
    // A generation the store has not reached means a missed change.
    index.apply(&[], &[], 1_000).unwrap();
    drop(index);
    let (index, origin) = open_or_rebuild(data.path(), &store).unwrap();
    assert!(
        matches!(&origin, KeywordOrigin::Rebuilt(r) if r.contains("generation")),
        "{origin:?}"
    );
    // So does a passage count that differs from the store's.
    index.apply(&[index_any_chunk(&index)], &[], store.generation().unwrap()).unwrap();
    drop(index);
    let (index, origin) = open_or_rebuild(data.path(), &store).unwrap();
    assert!(matches!(&origin, KeywordOrigin::Rebuilt(r) if r.contains("passages")), "{origin:?}");
    assert_eq!(index.len(), 15);
    drop(index);

    // Damage: the directory is deleted and rebuilt, and nothing else is touched.
    std::fs::write(keyword_dir(data.path()).join("meta.json"), b"not json").unwrap();
    let (index, origin) = open_or_rebuild(data.path(), &store).unwrap();
    assert!(
        matches!(&origin, KeywordOrigin::Rebuilt(r) if r.contains("cannot open")),
        "{origin:?}"
    );
    assert_eq!(index.len(), 15);
    assert!(db.exists());
}

fn index_any_chunk(index: &KeywordIndex) -> u64 {
    index.search("synthetic", 1, &[]).unwrap()[0].0
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_actor_applies_and_the_handle_searches() {
    let data = tempfile::tempdir().unwrap();
    let store = StoreReader::open(&data.path().join("mindory.redb"), "m").unwrap();
    let index = Arc::new(KeywordIndex::open(&keyword_dir(data.path())).unwrap());
    let slot = Slot::empty();
    let (actor, join) = Actor::spawn(
        None,
        KeywordActor,
        KeywordArgs {
            index: index.clone(),
            store,
        },
    )
    .await
    .unwrap();
    slot.set(actor.clone());
    let handle = KeywordHandle::new(slot, index);
    handle
        .apply(KeywordChange {
            removed: Vec::new(),
            added: vec![doc(1, 0, "fr", "Les enfants jouaient près de la rivière.")],
            generation: 4,
        })
        .await;
    // Searchable as soon as apply returns; French stemming applies.
    let hits = handle.search("enfant riviere".into(), 5, Vec::new()).await.unwrap();
    assert_eq!(ids(&hits), [chunk_id(1, 0)]);
    let hits = handle.phrase_search("près de la rivière".into(), 5, vec![1]).await.unwrap();
    assert_eq!(ids(&hits), [chunk_id(1, 0)]);
    assert_eq!((handle.len(), handle.committed_generation()), (1, Some(4)));
    actor.stop(None);
    join.await.unwrap();
}

/// Indexing speed and size on 10,000 synthetic passages of about 150 words
/// (printed, not asserted: run with `--nocapture` to see it).
#[test]
fn timing_ten_thousand_passages() {
    let mut state = 0x9E37_79B9_7F4A_7C15u64;
    let mut next = move || {
        state ^= state >> 12;
        state ^= state << 25;
        state ^= state >> 27;
        state.wrapping_mul(0x2545_F491_4F6C_DD1D)
    };
    // A Zipf-like vocabulary of pronounceable words.
    let syllables = [
        "ka", "lo", "mi", "ne", "ru", "sa", "ti", "vo", "en", "ar", "is", "ul", "th", "er", "an", "on",
    ];
    let vocabulary: Vec<String> = (0..5000u64)
        .map(|i| {
            let mut w = String::new();
            let mut x = i + 1;
            while x > 0 {
                w.push_str(syllables[(x % 16) as usize]);
                x /= 16;
            }
            w
        })
        .collect();
    let docs: Vec<KeywordDoc> = (0..10_000u32)
        .map(|i| {
            let words: Vec<&str> = (0..150)
                .map(|_| {
                    let r = (next() >> 11) as f64 / (1u64 << 53) as f64;
                    let rank = ((vocabulary.len() as f64).powf(r) as usize).saturating_sub(1);
                    vocabulary[rank].as_str()
                })
                .collect();
            doc(u64::from(i / 500) + 1, i % 500, "en", &(words.join(" ") + "."))
        })
        .collect();
    let bytes: usize = docs.iter().map(|d| d.text.len()).sum();

    let dir = tempfile::tempdir().unwrap();
    let index = open(dir.path());
    let t = Instant::now();
    index.rebuild(docs.clone().into_iter(), 1).unwrap();
    let rebuild = t.elapsed();
    let size = dir_size(dir.path());

    let dir2 = tempfile::tempdir().unwrap();
    let incremental = open(dir2.path());
    let t = Instant::now();
    for (n, book) in docs.chunks(500).enumerate() {
        incremental.apply(&[], book, n as u64 + 1).unwrap();
    }
    let apply = t.elapsed();

    let t = Instant::now();
    let queries = ["kalo mine", "\"kalo mine\"", "sati vo ruka", "thon erar"];
    for _ in 0..25 {
        for q in queries {
            index.search(q, 20, &[]).unwrap();
        }
    }
    let search = t.elapsed() / 100;
    println!(
        "keyword timing: 10000 passages ({:.1} MiB of text): rebuild {:.2} s ({:.0} passages/s), 20 applies of 500 {:.2} s, \
         index {:.1} MiB on disk, search {:.2} ms",
        bytes as f64 / 1048576.0,
        rebuild.as_secs_f64(),
        10_000.0 / rebuild.as_secs_f64(),
        apply.as_secs_f64(),
        size as f64 / 1048576.0,
        search.as_secs_f64() * 1000.0
    );
    assert_eq!(index.len(), 10_000);
    assert_eq!(incremental.len(), 10_000);
}

fn dir_size(dir: &Path) -> u64 {
    std::fs::read_dir(dir)
        .unwrap()
        .filter_map(|e| e.ok()?.metadata().ok())
        .filter(|m| m.is_file())
        .map(|m| m.len())
        .sum()
}
