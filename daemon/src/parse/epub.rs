//! EPUB 2 and 3: the spine gives reading order, the navigation document
//! (EPUB 3 `nav`) or the NCX (EPUB 2) gives chapter titles, the OPF metadata
//! gives title, author and language. Each spine document is XHTML and goes
//! through the HTML parser; a chapter title from the table of contents is put
//! in front of its document when the document does not start with it.
//!
//! Archives are hostile input: entries are counted and every read is capped
//! (per entry and per archive), so a zip bomb fails fast with a reason.

use std::collections::HashMap;

use scraper::{Html, Selector};

use super::archive::Archive;
use super::ParseError;
use crate::text::{Block, Document};

/// Whether `bytes` look like an EPUB (a zip whose first entry is the
/// `mimetype` file saying so).
pub fn sniff(bytes: &[u8]) -> bool {
    bytes.starts_with(b"PK\x03\x04")
        && bytes.len() > 58
        && bytes[30..bytes.len().min(100)].windows(20).any(|w| w == b"application/epub+zip")
}

/// Joins `href` onto the directory of `base` and folds `.` and `..`.
fn join(base: &str, href: &str) -> String {
    let href = href.split('#').next().unwrap_or("");
    let mut parts: Vec<&str> = match base.rfind('/') {
        Some(i) if !href.starts_with('/') => base[..i].split('/').collect(),
        _ => Vec::new(),
    };
    for part in href.trim_start_matches('/').split('/') {
        match part {
            "" | "." => {}
            ".." => {
                parts.pop();
            }
            p => parts.push(p),
        }
    }
    parts.join("/")
}

fn xml_attr<'a>(element: &'a scraper::ElementRef, name: &str) -> Option<&'a str> {
    element
        .value()
        .attrs()
        .find(|(k, _)| k.eq_ignore_ascii_case(name) || k.rsplit(':').next().is_some_and(|l| l.eq_ignore_ascii_case(name)))
        .map(|(_, v)| v)
}

fn select<'a>(doc: &'a Html, selector: &str) -> Vec<scraper::ElementRef<'a>> {
    let sel = Selector::parse(selector).expect("static selector");
    doc.select(&sel).collect()
}

/// Element names as html5ever sees XML tags: lowercase, prefix kept.
fn local_name(e: &scraper::ElementRef) -> String {
    let name = e.value().name().to_ascii_lowercase();
    name.rsplit(':').next().unwrap_or(&name).to_string()
}

fn elements_named<'a>(doc: &'a Html, name: &str) -> Vec<scraper::ElementRef<'a>> {
    doc.root_element()
        .descendants()
        .filter_map(scraper::ElementRef::wrap)
        .filter(|e| local_name(e) == name)
        .collect()
}

fn text_of(e: &scraper::ElementRef) -> String {
    e.text().collect::<String>().split_whitespace().collect::<Vec<_>>().join(" ")
}

/// Parses an EPUB file.
pub fn parse(bytes: &[u8]) -> Result<Document, ParseError> {
    let mut archive = Archive::open(bytes, "EPUB")?;

    let container_name = archive
        .resolve("META-INF/container.xml")
        .ok_or_else(|| ParseError::Invalid("not an EPUB: META-INF/container.xml is missing".into()))?;
    let container = Html::parse_document(&String::from_utf8_lossy(&archive.read(&container_name)?));
    // Some containers list bogus rootfiles first: take the first that exists.
    let rootfiles: Vec<String> = elements_named(&container, "rootfile")
        .iter()
        .filter_map(|e| xml_attr(e, "full-path").map(str::to_string))
        .collect();
    let opf_name = rootfiles
        .iter()
        .find_map(|p| archive.resolve(p))
        .ok_or_else(|| ParseError::Invalid(format!("EPUB package file is missing (container lists {rootfiles:?})")))?;
    let opf = Html::parse_document(&String::from_utf8_lossy(&archive.read(&opf_name)?));

    let mut doc = Document::default();
    let first_text = |name: &str| elements_named(&opf, name).first().map(text_of).filter(|t| !t.is_empty());
    doc.title = first_text("title");
    doc.author = first_text("creator");
    doc.language = first_text("language");

    // Manifest: id → (path in the archive, media type, properties).
    let mut manifest: HashMap<String, (String, String, String)> = HashMap::new();
    for item in elements_named(&opf, "item") {
        let (Some(id), Some(href)) = (xml_attr(&item, "id"), xml_attr(&item, "href")) else {
            continue;
        };
        let media = xml_attr(&item, "media-type").unwrap_or("").to_string();
        let props = xml_attr(&item, "properties").unwrap_or("").to_string();
        manifest.insert(id.to_string(), (join(&opf_name, href), media, props));
    }
    let spine_toc = elements_named(&opf, "spine")
        .first()
        .and_then(|s| xml_attr(s, "toc").map(str::to_string));
    let spine: Vec<String> = elements_named(&opf, "itemref")
        .iter()
        .filter(|r| xml_attr(r, "linear") != Some("no"))
        .filter_map(|r| xml_attr(r, "idref").and_then(|id| manifest.get(id)))
        .filter(|(_, media, _)| media.contains("html") || media.is_empty())
        .map(|(path, _, _)| path.clone())
        .collect();
    if spine.is_empty() {
        return Err(ParseError::Invalid("EPUB spine lists no readable documents".into()));
    }

    let titles = table_of_contents(&mut archive, &manifest, spine_toc.as_deref());

    for path in &spine {
        let Some(name) = archive.resolve(path) else {
            tracing::debug!(%path, "EPUB spine item missing from the archive");
            continue;
        };
        let raw = archive.read(&name)?;
        let text = super::decode_text(&raw).unwrap_or_else(|_| String::from_utf8_lossy(&raw).into_owned());
        let chapter = super::html::parse(&text);
        let mut blocks = chapter.blocks;
        if let Some(title) = titles.get(path.as_str()) {
            let starts_with_title = blocks
                .iter()
                .find(|b| b.heading_level.is_some())
                .is_some_and(|b| b.text.split_whitespace().collect::<Vec<_>>() == title.split_whitespace().collect::<Vec<_>>());
            if !starts_with_title {
                blocks.insert(0, Block::heading(1, title.clone()));
            }
        }
        doc.blocks.extend(blocks);
    }
    if doc.blocks.iter().all(|b| b.text.trim().is_empty()) {
        return Err(ParseError::Empty);
    }
    Ok(doc)
}

/// Chapter titles by document path, from the EPUB 3 nav or the EPUB 2 NCX.
/// The first entry pointing into a document names it.
fn table_of_contents(
    archive: &mut Archive,
    manifest: &HashMap<String, (String, String, String)>,
    spine_toc: Option<&str>,
) -> HashMap<String, String> {
    let mut titles = HashMap::new();
    let nav = manifest
        .values()
        .find(|(_, _, props)| props.split_whitespace().any(|p| p == "nav"))
        .map(|(p, _, _)| p.clone());
    if let Some(nav_path) = nav {
        if let Some(name) = archive.resolve(&nav_path) {
            if let Ok(raw) = archive.read(&name) {
                let html = Html::parse_document(&String::from_utf8_lossy(&raw));
                let navs = select(&html, "nav");
                let toc = navs
                    .iter()
                    .find(|n| {
                        n.value()
                            .attrs()
                            .any(|(k, v)| k.ends_with("type") && v.split_whitespace().any(|t| t == "toc"))
                    })
                    .or(navs.first());
                if let Some(toc) = toc {
                    let anchors = Selector::parse("a[href]").expect("static selector");
                    for a in toc.select(&anchors) {
                        let title = text_of(&a);
                        let target = join(&nav_path, a.value().attr("href").unwrap_or(""));
                        if !title.is_empty() {
                            titles.entry(target).or_insert(title);
                        }
                    }
                }
            }
        }
    }
    if titles.is_empty() {
        let ncx = spine_toc
            .and_then(|id| manifest.get(id))
            .or_else(|| manifest.values().find(|(_, media, _)| media.contains("dtbncx")))
            .map(|(p, _, _)| p.clone());
        if let Some(ncx_path) = ncx {
            if let Some(name) = archive.resolve(&ncx_path) {
                if let Ok(raw) = archive.read(&name) {
                    let xml = Html::parse_document(&String::from_utf8_lossy(&raw));
                    for point in elements_named(&xml, "navpoint") {
                        let label = point
                            .descendants()
                            .filter_map(scraper::ElementRef::wrap)
                            .find(|e| local_name(e) == "text")
                            .map(|e| text_of(&e))
                            .unwrap_or_default();
                        let src = point
                            .descendants()
                            .filter_map(scraper::ElementRef::wrap)
                            .find(|e| local_name(e) == "content")
                            .and_then(|e| xml_attr(&e, "src").map(str::to_string));
                        if let (false, Some(src)) = (label.is_empty(), src) {
                            titles.entry(join(&ncx_path, &src)).or_insert(label);
                        }
                    }
                }
            }
        }
    }
    titles
}

#[cfg(test)]
mod tests {
    use super::super::archive::{percent_decode, MAX_ENTRY_BYTES};
    use super::*;
    use std::io::Cursor;

    #[test]
    fn paths_join_and_decode() {
        assert_eq!(join("OEBPS/content.opf", "text/ch1.xhtml#x"), "OEBPS/text/ch1.xhtml");
        assert_eq!(join("OEBPS/nav/nav.xhtml", "../text/a%20b.xhtml"), "OEBPS/text/a%20b.xhtml");
        assert_eq!(join("content.opf", "ch1.xhtml"), "ch1.xhtml");
        assert_eq!(percent_decode("a%20b%2Fc"), "a b/c");
        assert_eq!(percent_decode("100%"), "100%");
    }

    fn build_epub(files: &[(&str, &str)]) -> Vec<u8> {
        let mut buf = Cursor::new(Vec::new());
        let mut w = zip::ZipWriter::new(&mut buf);
        let stored = zip::write::SimpleFileOptions::default().compression_method(zip::CompressionMethod::Stored);
        w.start_file("mimetype", stored).unwrap();
        std::io::Write::write_all(&mut w, b"application/epub+zip").unwrap();
        for (name, body) in files {
            w.start_file(*name, zip::write::SimpleFileOptions::default()).unwrap();
            std::io::Write::write_all(&mut w, body.as_bytes()).unwrap();
        }
        w.finish().unwrap();
        buf.into_inner()
    }

    #[test]
    fn epub2_spine_order_ncx_titles_and_metadata() {
        let bytes = build_epub(&[
            (
                "META-INF/container.xml",
                r#"<container><rootfiles><rootfile full-path="OPS/book.opf"/></rootfiles></container>"#,
            ),
            (
                "OPS/book.opf",
                r#"<package><metadata><dc:title>Tiny Book</dc:title><dc:creator>Ann Author</dc:creator></metadata>
                <manifest><item id="ncx" href="toc.ncx" media-type="application/x-dtbncx+xml"/>
                <item id="b" href="text/two%20words.xhtml" media-type="application/xhtml+xml"/>
                <item id="a" href="text/one.xhtml" media-type="application/xhtml+xml"/></manifest>
                <spine toc="ncx"><itemref idref="a"/><itemref idref="b"/></spine></package>"#,
            ),
            (
                "OPS/toc.ncx",
                r#"<ncx><navMap><navPoint><navLabel><text>The Beginning</text></navLabel><content src="text/one.xhtml"/></navPoint>
                <navPoint><navLabel><text>The End</text></navLabel><content src="text/two%20words.xhtml#x"/></navPoint></navMap></ncx>"#,
            ),
            ("OPS/text/one.xhtml", "<html><body><p>First words.</p></body></html>"),
            (
                "OPS/text/two words.xhtml",
                "<html><body><h1>The End</h1><p>Last words.</p></body></html>",
            ),
        ]);
        assert!(sniff(&bytes));
        let doc = parse(&bytes).unwrap();
        assert_eq!(doc.title.as_deref(), Some("Tiny Book"));
        assert_eq!(doc.author.as_deref(), Some("Ann Author"));
        let texts: Vec<_> = doc.blocks.iter().map(|b| (b.heading_level, b.text.as_str())).collect();
        assert_eq!(
            texts,
            [
                (Some(1), "The Beginning"),
                (None, "First words."),
                (Some(1), "The End"),
                (None, "Last words.")
            ]
        );
    }

    #[test]
    fn zip_bombs_and_non_epubs_fail_with_reasons() {
        let big = "0".repeat((MAX_ENTRY_BYTES + 10) as usize);
        let bytes = build_epub(&[("META-INF/container.xml", big.as_str())]);
        let err = parse(&bytes).unwrap_err().to_string();
        assert!(err.contains("zip bomb"), "{err}");
        assert!(parse(b"PK\x03\x04 junk").unwrap_err().to_string().contains("not a readable EPUB"));
        let no_container = build_epub(&[("x.txt", "hello")]);
        assert!(parse(&no_container).unwrap_err().to_string().contains("container.xml is missing"));
    }

    fn corpus_dir() -> std::path::PathBuf {
        std::env::var_os("MINDORY_CORPUS")
            .map(std::path::PathBuf::from)
            .unwrap_or_else(|| std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../shared/corpus"))
    }

    #[test]
    fn every_corpus_epub_reads_in_order_with_chapters() {
        let dir = corpus_dir().join("epub");
        let mut seen = 0;
        for entry in std::fs::read_dir(&dir).unwrap_or_else(|e| panic!("corpus {} missing: {e}", dir.display())) {
            let path = entry.unwrap().path();
            let bytes = std::fs::read(&path).unwrap();
            let doc = parse(&bytes).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
            let words: usize = doc.blocks.iter().map(|b| b.text.split_whitespace().count()).sum();
            let headings = doc.blocks.iter().filter(|b| b.heading_level.is_some()).count();
            eprintln!(
                "{}: {:?} by {:?}, {} blocks, {headings} headings, {words} words",
                path.display(),
                doc.title,
                doc.author,
                doc.blocks.len()
            );
            assert!(words > 0, "{}", path.display());
            assert!(headings > 0 || words < 1000, "{} has no chapters", path.display());
            seen += 1;
        }
        assert!(seen >= 10);
        let pp = parse(&std::fs::read(dir.join("pp.epub")).unwrap()).unwrap();
        assert_eq!(pp.title.as_deref(), Some("Pride and Prejudice"));
        assert_eq!(pp.author.as_deref(), Some("Jane Austen"));
        let book = crate::text::assemble(&pp);
        let at = book.text.find("In vain I have struggled").unwrap();
        let section = book.sections.iter().rev().find(|s| s.start <= at).unwrap();
        assert_eq!(section.heading, "Chapter 34");
    }

    #[test]
    fn malformed_archives_fail_cleanly() {
        let bad = corpus_dir().join("malformed");
        let mut files = vec![bad.join("epub/epubcheck-invalid.epub")];
        files.extend(std::fs::read_dir(bad.join("zip")).unwrap().map(|e| e.unwrap().path()));
        for path in files {
            let bytes = std::fs::read(&path).unwrap();
            let started = std::time::Instant::now();
            match parse(&bytes) {
                Ok(doc) => eprintln!("{}: parsed, {} blocks", path.display(), doc.blocks.len()),
                Err(e) => {
                    let reason = e.to_string();
                    assert!(!reason.is_empty() && !reason.contains('\n'), "{}: {reason:?}", path.display());
                    eprintln!("{}: {reason}", path.display());
                }
            }
            assert!(
                started.elapsed() < std::time::Duration::from_secs(10),
                "{} took {:?}",
                path.display(),
                started.elapsed()
            );
        }
    }
}
