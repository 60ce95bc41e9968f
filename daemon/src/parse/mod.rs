//! Turns a file's bytes into a [`Document`]: format detection, then one
//! parser per format.
//!
//! Parsers are pure functions of the bytes (no I/O, no shared state). The
//! daemon runs them in a sandboxed child process ([`sandbox`]) so a crash, a
//! hang or a memory blow-up on a hostile file fails that file only.
//! Formats here: plain text, Markdown, HTML, EPUB, DOCX, ODT, FB2, RTF, PDF
//! and MOBI/AZW3. Detection looks at the content first and the extension
//! second, so a mislabelled file still parses.

mod archive;
mod docx;
pub mod epub;
mod fb2;
mod html;
mod markdown;
mod mobi;
mod odt;
pub mod pdf;
pub mod pdfium;
mod rtf;
pub mod sandbox;
mod txt;
mod xml;

use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::text::Document;

/// A book format Mindory can read.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Format {
    /// Plain text in any common encoding.
    Text,
    /// CommonMark / GitHub Markdown.
    Markdown,
    /// HTML or XHTML.
    Html,
    /// EPUB 2 or 3.
    Epub,
    /// Word (Office Open XML).
    Docx,
    /// OpenDocument text.
    Odt,
    /// FictionBook 2.
    Fb2,
    /// Rich Text Format.
    Rtf,
    /// Portable Document Format.
    Pdf,
    /// Mobipocket / Kindle (MOBI, AZW, AZW3) without DRM.
    Mobi,
}

impl Format {
    /// Short lowercase name used in the store and on the wire.
    pub fn name(self) -> &'static str {
        match self {
            Format::Text => "txt",
            Format::Markdown => "md",
            Format::Html => "html",
            Format::Epub => "epub",
            Format::Docx => "docx",
            Format::Odt => "odt",
            Format::Fb2 => "fb2",
            Format::Rtf => "rtf",
            Format::Pdf => "pdf",
            Format::Mobi => "mobi",
        }
    }

    /// The format an extension suggests, if Mindory reads it.
    pub fn from_extension(path: &Path) -> Option<Format> {
        let ext = path.extension()?.to_str()?.to_ascii_lowercase();
        match ext.as_str() {
            "txt" | "text" => Some(Format::Text),
            "md" | "markdown" | "mdown" | "mkd" => Some(Format::Markdown),
            "html" | "htm" | "xhtml" => Some(Format::Html),
            "epub" => Some(Format::Epub),
            "docx" => Some(Format::Docx),
            "odt" => Some(Format::Odt),
            "fb2" => Some(Format::Fb2),
            "rtf" => Some(Format::Rtf),
            "pdf" => Some(Format::Pdf),
            "mobi" | "azw" | "azw3" | "prc" => Some(Format::Mobi),
            _ => None,
        }
    }
}

/// Why a file could not be parsed. Each message is one line for `books --failed`.
#[derive(Debug, Clone, thiserror::Error, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub enum ParseError {
    /// The extension is not one Mindory reads and the content did not say otherwise.
    #[error("unsupported format: {0}")]
    Unsupported(String),
    /// The bytes are binary data, not text.
    #[error("not a text file: {0}")]
    Binary(String),
    /// The file claims a format but its structure is broken.
    #[error("{0}")]
    Invalid(String),
    /// Parsing worked but there is no text to index.
    #[error("no text to index (the file is empty or only markup)")]
    Empty,
    /// The parser crashed (a panic, or the sandboxed worker died).
    #[error("parser crashed ({0}); the file is probably damaged")]
    Crashed(String),
}

/// Decides the format from the content, falling back to the extension.
pub fn detect(path: &Path, bytes: &[u8]) -> Result<Format, ParseError> {
    let by_ext = Format::from_extension(path);
    // PDF readers accept the header anywhere in the first kilobyte.
    if bytes[..bytes.len().min(1024)].windows(5).any(|w| w == b"%PDF-") {
        return Ok(Format::Pdf);
    }
    if mobi::sniff(bytes) {
        return Ok(Format::Mobi);
    }
    if bytes.starts_with(b"{\\rtf") {
        return Ok(Format::Rtf);
    }
    if epub::sniff(bytes) {
        return Ok(Format::Epub);
    }
    if odt::sniff(bytes) {
        return Ok(Format::Odt);
    }
    if fb2::sniff(bytes) {
        return Ok(Format::Fb2);
    }
    if bytes.starts_with(b"PK\x03\x04") {
        // A zip without a telling mimetype: look inside for Word's main part.
        if let Ok(archive) = archive::Archive::open(bytes, "zip") {
            if docx::sniff_entries(&archive) {
                return Ok(Format::Docx);
            }
        }
        if let Some(format @ (Format::Epub | Format::Docx | Format::Odt)) = by_ext {
            return Ok(format);
        }
    }
    match by_ext {
        Some(format @ (Format::Epub | Format::Docx | Format::Odt)) => {
            // "an EPUB", "an ODT", "a DOCX": the article follows the sound.
            let name = format.name().to_uppercase();
            let article = if name.starts_with(['E', 'O']) { "an" } else { "a" };
            return Err(ParseError::Invalid(format!("not {article} {name} file: it is not a zip archive")));
        }
        Some(Format::Pdf) => return Err(ParseError::Invalid("not a PDF file: there is no %PDF- header".into())),
        Some(Format::Mobi) => return Err(ParseError::Invalid("not a MOBI file: no BOOKMOBI or TEXtREAd header".into())),
        Some(Format::Rtf) => return Err(ParseError::Invalid("not an RTF file: it does not start with {\\rtf".into())),
        _ => {}
    }
    let head = String::from_utf8_lossy(&bytes[..bytes.len().min(1024)]).to_ascii_lowercase();
    let head = head.trim_start_matches('\u{feff}').trim_start();
    let looks_html =
        head.starts_with("<!doctype html") || head.starts_with("<html") || (head.starts_with("<?xml") && head.contains("<html"));
    if looks_html {
        return Ok(Format::Html);
    }
    match by_ext {
        Some(format) => Ok(format),
        None => {
            let ext = path
                .extension()
                .map(|e| format!(".{}", e.to_string_lossy()))
                .unwrap_or_else(|| "no extension".into());
            Err(ParseError::Unsupported(format!(
                "{ext} (Mindory reads .txt, .md, .html, .epub, .pdf, .docx, .odt, .rtf, .fb2, .mobi and .azw3)"
            )))
        }
    }
}

/// Parses `bytes` (the content of `path`) into a document; `pdfium` is the
/// PDF engine's library. Call it through [`sandbox::parse`] in the daemon.
pub fn parse(path: &Path, bytes: &[u8], pdfium: &Path) -> Result<(Format, Document), ParseError> {
    let format = detect(path, bytes)?;
    let mut document = parse_as(format, bytes, pdfium)?;
    if document.blocks.iter().all(|b| b.text.trim().is_empty()) {
        return Err(ParseError::Empty);
    }
    if document.title.as_deref().is_none_or(|t| t.trim().is_empty()) {
        document.title = path.file_stem().map(|s| s.to_string_lossy().replace(['_', '-'], " "));
    }
    Ok((format, document))
}

/// Runs the parser of `format` on `bytes`, with no detection and no checks
/// on the result. The fuzz targets (through [`crate::fuzzing`]) call it to
/// reach one parser directly, whatever the bytes look like.
pub(crate) fn parse_as(format: Format, bytes: &[u8], pdfium: &Path) -> Result<Document, ParseError> {
    Ok(match format {
        Format::Text => txt::parse(&decode_text(bytes)?),
        Format::Markdown => markdown::parse(&decode_text(bytes)?),
        Format::Html => html::parse(&decode_text(bytes)?),
        Format::Epub => epub::parse(bytes)?,
        Format::Docx => docx::parse(bytes)?,
        Format::Odt => odt::parse(bytes)?,
        Format::Fb2 => fb2::parse(bytes)?,
        Format::Rtf => rtf::parse(bytes)?,
        Format::Pdf => pdf::parse(bytes, pdfium)?,
        Format::Mobi => mobi::parse(bytes)?,
    })
}

/// Decodes text bytes: BOMs first (UTF-8, UTF-16), then UTF-16 without BOM,
/// then strict UTF-8, then the most likely legacy encoding (GBK, Shift-JIS,
/// windows-1252, …) as guessed by chardetng.
pub fn decode_text(bytes: &[u8]) -> Result<String, ParseError> {
    if let Some((encoding, bom_len)) = encoding_rs::Encoding::for_bom(bytes) {
        let (text, _) = encoding.decode_without_bom_handling(&bytes[bom_len..]);
        return check_textual(text.into_owned());
    }
    // UTF-16 before UTF-8: Latin text in UTF-16 is valid UTF-8 full of NULs.
    if let Some(encoding) = sniff_utf16(bytes) {
        let (text, _) = encoding.decode_without_bom_handling(bytes);
        return check_textual(text.into_owned());
    }
    if let Ok(text) = std::str::from_utf8(bytes) {
        return check_textual(text.to_string());
    }
    if bytes.contains(&0) {
        return Err(ParseError::Binary("contains NUL bytes and is not UTF-16".into()));
    }
    let mut detector = chardetng::EncodingDetector::new();
    detector.feed(bytes, true);
    let encoding = detector.guess(None, true);
    let (text, _, had_errors) = encoding.decode(bytes);
    if had_errors {
        return Err(ParseError::Binary(format!(
            "invalid byte sequences for every likely encoding (best guess {})",
            encoding.name()
        )));
    }
    check_textual(text.into_owned())
}

/// UTF-16 without BOM shows as NUL in every other byte for Latin text.
fn sniff_utf16(bytes: &[u8]) -> Option<&'static encoding_rs::Encoding> {
    let sample = &bytes[..bytes.len().min(4096) & !1];
    if sample.len() < 4 {
        return None;
    }
    let pairs = sample.len() / 2;
    let even_nul = sample.iter().step_by(2).filter(|b| **b == 0).count();
    let odd_nul = sample.iter().skip(1).step_by(2).filter(|b| **b == 0).count();
    if odd_nul * 10 > pairs * 7 && even_nul * 10 < pairs {
        Some(encoding_rs::UTF_16LE)
    } else if even_nul * 10 > pairs * 7 && odd_nul * 10 < pairs {
        Some(encoding_rs::UTF_16BE)
    } else {
        None
    }
}

/// Rejects decoded "text" that is mostly control characters: a binary file.
fn check_textual(text: String) -> Result<String, ParseError> {
    let total = text.chars().take(100_000).count().max(1);
    let controls = text
        .chars()
        .take(100_000)
        .filter(|c| (c.is_control() && !matches!(c, '\n' | '\r' | '\t' | '\u{c}')) || *c == '\u{FFFD}')
        .count();
    if controls * 100 > total * 2 {
        return Err(ParseError::Binary(format!(
            "{controls} of the first {total} characters are control or invalid characters"
        )));
    }
    Ok(text)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decodes_boms_legacy_and_rejects_binary() {
        let utf16: Vec<u8> = [0xFF, 0xFE]
            .into_iter()
            .chain("héllo".encode_utf16().flat_map(|u| u.to_le_bytes()))
            .collect();
        assert_eq!(decode_text(&utf16).unwrap(), "héllo");
        let no_bom: Vec<u8> = "plain old text here".encode_utf16().flat_map(|u| u.to_le_bytes()).collect();
        assert_eq!(decode_text(&no_bom).unwrap(), "plain old text here");
        let (gbk, _, _) =
            encoding_rs::GBK.encode("呐喊，鲁迅的小说集。我在年青时候也曾经做过许多梦，后来大半忘却了，但自己也并不以为可惜。");
        assert!(decode_text(&gbk).unwrap().contains("鲁迅"));
        let (latin, _, _) = encoding_rs::WINDOWS_1252.encode("Déjà vu, naïve café façade — «quoted» text.");
        assert!(decode_text(&latin).unwrap().contains("naïve café"));
        let binary: Vec<u8> = (0..2000u32).map(|i| (i * 7 % 256) as u8).collect();
        assert!(matches!(decode_text(&binary), Err(ParseError::Binary(_))));
    }

    #[test]
    fn detection_prefers_content() {
        assert_eq!(detect(Path::new("a.txt"), b"<!DOCTYPE html><html></html>").unwrap(), Format::Html);
        assert_eq!(detect(Path::new("a.md"), b"# Title").unwrap(), Format::Markdown);
        assert!(matches!(detect(Path::new("a.bin"), b"xyz"), Err(ParseError::Unsupported(_))));
    }
}

#[cfg(test)]
mod corpus_tests {
    //! Every document format against the shared corpus: the Pride and
    //! Prejudice conversions must all put Darcy's first proposal in
    //! "Chapter 34" with the right title and author.

    use super::*;
    use crate::text::assemble;

    fn corpus(rel: &str) -> std::path::PathBuf {
        std::env::var_os("MINDORY_CORPUS")
            .map(std::path::PathBuf::from)
            .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../../shared/corpus"))
            .join(rel)
    }

    /// PDFium as `mindory models fetch` installed it (scripts/test fetches first).
    pub(crate) fn pdfium() -> std::path::PathBuf {
        let models = std::env::var_os(mindory_proto::paths::MODELS_DIR_ENV)
            .map(std::path::PathBuf::from)
            .unwrap_or_else(mindory_proto::paths::default_models_dir);
        mindory_proto::models::ModelPaths::new(&models).pdfium
    }

    fn parse(path: &Path, bytes: &[u8]) -> Result<(Format, Document), ParseError> {
        super::parse(path, bytes, &pdfium())
    }

    fn parse_file(rel: &str) -> Result<(Format, Document), ParseError> {
        let path = corpus(rel);
        let bytes = std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        parse(&path, &bytes)
    }

    #[test]
    fn pride_and_prejudice_in_every_format_keeps_chapter_34() {
        for (rel, format) in [
            ("docx/pp.docx", Format::Docx),
            ("odt/pp.odt", Format::Odt),
            ("fb2/pp.fb2", Format::Fb2),
            ("epub/pp.epub", Format::Epub),
            ("html/pp.html", Format::Html),
            ("txt/prideprejudice.txt", Format::Text),
            ("rtf/pp.rtf", Format::Rtf),
        ] {
            let (got, doc) = parse_file(rel).unwrap_or_else(|e| panic!("{rel}: {e}"));
            assert_eq!(got, format, "{rel}");
            if format == Format::Rtf {
                // pandoc's RTF carries no \info group: the title is the file name.
                assert_eq!(doc.title.as_deref(), Some("pp"), "{rel}");
            } else {
                assert!(
                    doc.title.as_deref().is_some_and(|t| t.to_lowercase() == "pride and prejudice"),
                    "{rel}: {:?}",
                    doc.title
                );
                assert_eq!(doc.author.as_deref(), Some("Jane Austen"), "{rel}");
            }
            if matches!(format, Format::Epub | Format::Docx | Format::Odt | Format::Fb2 | Format::Html) {
                assert!(
                    doc.language.as_deref().is_some_and(|l| l.starts_with("en")),
                    "{rel}: language {:?}",
                    doc.language
                );
            }
            let book = assemble(&doc);
            let at = book
                .text
                .find("have struggled")
                .unwrap_or_else(|| panic!("{rel}: proposal text missing"));
            let section = book.sections.iter().rev().find(|s| s.start <= at).unwrap();
            assert!(
                section.heading.ends_with("Chapter 34"),
                "{rel}: proposal is under {:?}",
                section.heading
            );
            let chapters = book.sections.iter().filter(|s| s.heading.contains("Chapter")).count();
            assert!(chapters >= 61, "{rel}: {chapters} chapters");
        }
    }

    #[test]
    fn word_features_footnotes_tables_lists_and_empty_documents() {
        let (_, doc) = parse_file("docx/footnotes.docx").unwrap();
        let text = assemble(&doc).text;
        assert!(text.contains("[1]") && text.contains("Notes"), "{text}");
        let (_, doc) = parse_file("docx/tables.docx").unwrap();
        assert!(assemble(&doc).text.contains(" | "));
        let (_, doc) = parse_file("docx/simple-list.docx").unwrap();
        assert!(assemble(&doc).text.contains("• "));
        assert!(matches!(parse_file("docx/empty.docx"), Err(ParseError::Empty)));
        for entry in std::fs::read_dir(corpus("docx")).unwrap() {
            let path = entry.unwrap().path();
            let bytes = std::fs::read(&path).unwrap();
            match parse(&path, &bytes) {
                Ok((format, _)) => assert_eq!(format, Format::Docx),
                Err(e) => assert_eq!(e, ParseError::Empty, "{}", path.display()),
            }
        }
    }

    #[test]
    fn fictionbook_help_files_have_sections() {
        for (rel, title) in [("fb2/MiniHelp.en.fb2", "About FBReader"), ("fb2/MiniHelp.de.fb2", "Über FBReader")] {
            let (format, doc) = parse_file(rel).unwrap();
            assert_eq!(format, Format::Fb2);
            assert_eq!(doc.title.as_deref(), Some(title), "{rel}");
            // Its two subtitles become headings; embedded images add no text.
            assert_eq!(doc.blocks.iter().filter(|b| b.heading_level.is_some()).count(), 2, "{rel}");
            assert!(
                doc.blocks.iter().all(|b| b.text.len() < 2000),
                "{rel}: binary data leaked into the text"
            );
        }
    }

    #[test]
    fn pdf_pages_labels_outline_and_layout() {
        // R-intro: roman front matter, then arabic page labels; the outline
        // gives chapters; running heads are gone.
        let (format, doc) = parse_file("pdf/R-intro.pdf").unwrap();
        assert_eq!(format, Format::Pdf);
        let block = doc
            .blocks
            .iter()
            .find(|b| b.text.contains("Wilkinson and Rogers notation"))
            .expect("phrase on p. 57");
        let page = block.page.clone().unwrap();
        assert_eq!((page.label.as_deref(), page.number), (Some("57"), 63));
        assert!(doc
            .blocks
            .iter()
            .any(|b| b.page.as_ref().is_some_and(|p| p.label.as_deref() == Some("iv"))));
        assert!(
            !doc.blocks.iter().any(|b| b.text.starts_with("Chapter 11: Statistical models in R")),
            "running head kept"
        );
        let book = assemble(&doc);
        let at = book.text.find("Wilkinson and Rogers").unwrap();
        let section = book.sections.iter().rev().find(|s| s.start <= at).unwrap();
        assert_eq!(
            section.heading,
            "11 Statistical models in R › Defining statistical models; formulae"
        );

        // The outline's titles become the chapters, at the right place.
        let (_, doc) = parse_file("pdf/pdflatex-outline.pdf").unwrap();
        let headings: Vec<&str> = doc
            .blocks
            .iter()
            .filter(|b| b.heading_level.is_some())
            .map(|b| b.text.as_str())
            .collect();
        assert_eq!(headings, ["Foo", "Bar", "Baz", "Foo", "Bar", "Baz", "Foo", "Bar", "Baz"]);
        assert!(
            doc.blocks.iter().all(|b| b.text != "1 Foo"),
            "the printed heading is not repeated as text"
        );

        // Side-by-side figures: captions stay on their line, the body is one
        // paragraph, and hyphenated words are whole.
        let (_, doc) = parse_file("pdf/side-by-side-subfig.pdf").unwrap();
        let texts: Vec<&str> = doc.blocks.iter().map(|b| b.text.as_str()).collect();
        assert!(texts.contains(&"(a) South American coati (b) Brown bear"), "{texts:?}");
        assert!(texts.contains(&"Figure 1.1: Bears"), "{texts:?}");
        assert!(
            texts
                .iter()
                .any(|t| t.contains("eirmod tempor invidunt") && t.contains("takimata sanctus")),
            "{texts:?}"
        );

        // Language and title from the document's own metadata.
        let (_, doc) = parse_file("pdf/multilang.pdf").unwrap();
        assert_eq!(doc.language.as_deref(), Some("en-US"));
        assert!(assemble(&doc).text.contains("مرحبا بالعالم"));
    }

    #[test]
    fn scanned_and_encrypted_pdfs_fail_with_their_reasons() {
        for rel in ["pdf/scanned/skew.pdf", "pdf/scanned/multipage.pdf"] {
            let err = parse_file(rel).unwrap_err().to_string();
            assert!(err.starts_with("no text layer (scanned PDF)"), "{rel}: {err}");
        }
        for rel in [
            "pdf/encrypted/crazyones-encrypted-256.pdf",
            "pdf/encrypted/libreoffice-writer-password.pdf",
        ] {
            let err = parse_file(rel).unwrap_err().to_string();
            assert!(err.starts_with("encrypted"), "{rel}: {err}");
        }
    }

    #[test]
    fn mobi_has_chapters_metadata_and_language() {
        let (format, doc) = parse_file("mobi/debian-paketmanagement.mobi").unwrap();
        assert_eq!(format, Format::Mobi);
        assert_eq!(doc.title.as_deref(), Some("Debian-Paketmanagement"));
        assert_eq!(doc.author.as_deref(), Some("Frank Hofmann"));
        assert_eq!(doc.language.as_deref(), Some("de"));
        let book = assemble(&doc);
        let chapters = book.sections.iter().filter(|s| s.heading.contains("Kapitel ")).count();
        assert!(chapters >= 45, "{chapters} chapters");
        let at = book.text.find("Betreuen Sie eine Reihe von Rechnern").unwrap();
        let section = book.sections.iter().rev().find(|s| s.start <= at).unwrap();
        assert!(
            section.heading.ends_with("Kapitel 34. Paketkonfiguration sichern"),
            "{}",
            section.heading
        );
    }

    #[test]
    fn zips_renamed_to_office_formats_fail_with_a_reason() {
        for name in std::fs::read_dir(corpus("malformed/zip")).unwrap() {
            let zip = name.unwrap().path();
            let bytes = std::fs::read(&zip).unwrap();
            for ext in ["docx", "odt", "epub"] {
                let renamed = zip.with_extension(ext);
                let started = std::time::Instant::now();
                let result = parse(&renamed, &bytes);
                assert!(
                    started.elapsed() < std::time::Duration::from_secs(10),
                    "{} as .{ext}",
                    zip.display()
                );
                if let Err(e) = result {
                    let reason = e.to_string();
                    assert!(!reason.is_empty() && !reason.contains('\n'), "{reason:?}");
                }
            }
        }
    }
}
