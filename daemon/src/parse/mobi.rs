//! MOBI, AZW and AZW3 (Mobipocket / Kindle) without DRM: the PalmDB
//! container, PalmDOC (LZ77) or no compression, the MOBI and EXTH headers for
//! title, author and language, then the book's HTML through the HTML parser,
//! so headings become chapters. HUFF/CDIC compression and DRM fail with
//! "unsupported: …".
//!
//! Every offset read from the file is bounds-checked and the decompressed
//! size is capped, so a damaged or hostile file fails with a reason.

use super::{html, ParseError};
use crate::text::Document;

/// Decompressed text is capped: no real book comes near it.
const MAX_TEXT: usize = 256 << 20;
/// One PalmDOC record decompresses to at most this (4 KiB in practice).
const MAX_RECORD: usize = 64 << 10;

/// Whether the bytes are a PalmDB book Mindory might read.
pub fn sniff(bytes: &[u8]) -> bool {
    matches!(bytes.get(60..68), Some(b"BOOKMOBI" | b"TEXtREAd"))
}

fn invalid(detail: impl std::fmt::Display) -> ParseError {
    ParseError::Invalid(format!("damaged MOBI: {detail}"))
}

fn u16_at(b: &[u8], at: usize) -> Option<u16> {
    Some(u16::from_be_bytes(b.get(at..at + 2)?.try_into().ok()?))
}

fn u32_at(b: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_be_bytes(b.get(at..at + 4)?.try_into().ok()?))
}

/// The PalmDB records as byte slices.
fn records(bytes: &[u8]) -> Result<Vec<&[u8]>, ParseError> {
    let count = u16_at(bytes, 76).ok_or_else(|| invalid("truncated header"))? as usize;
    let mut offsets = Vec::with_capacity(count);
    for i in 0..count {
        let at = u32_at(bytes, 78 + 8 * i).ok_or_else(|| invalid("truncated record list"))? as usize;
        offsets.push(at);
    }
    let mut out = Vec::with_capacity(count);
    for i in 0..count {
        let start = offsets[i];
        let end = offsets.get(i + 1).copied().unwrap_or(bytes.len());
        if start > end || end > bytes.len() {
            return Err(invalid(format!("record {i} lies outside the file")));
        }
        out.push(&bytes[start..end]);
    }
    Ok(out)
}

/// Parses a MOBI/AZW/AZW3 (or plain PalmDOC) book.
pub fn parse(bytes: &[u8]) -> Result<Document, ParseError> {
    if !sniff(bytes) {
        return Err(ParseError::Invalid("not a MOBI file: no BOOKMOBI or TEXtREAd header".into()));
    }
    let records = records(bytes)?;
    let header = *records.first().ok_or_else(|| invalid("no records"))?;
    let compression = u16_at(header, 0).ok_or_else(|| invalid("truncated PalmDOC header"))?;
    let text_records = u16_at(header, 8).unwrap_or(0) as usize;
    let encryption = u16_at(header, 12).unwrap_or(0);
    if encryption != 0 {
        return Err(ParseError::Invalid(format!(
            "unsupported: DRM-protected (Mobipocket encryption type {encryption}); Mindory reads only DRM-free books"
        )));
    }
    if compression == 17480 {
        return Err(ParseError::Invalid(
            "unsupported: HUFF/CDIC compression (a Kindle dictionary-compressed book)".into(),
        ));
    }
    if compression != 1 && compression != 2 {
        return Err(invalid(format!("unknown compression type {compression}")));
    }

    let mobi = header.get(16..).filter(|h| h.starts_with(b"MOBI"));
    let mut utf8 = false;
    let mut extra_flags = 0u16;
    let mut title = None;
    let mut author = None;
    let mut language = None;
    if let Some(mobi) = mobi {
        let header_len = u32_at(mobi, 4).unwrap_or(0) as usize;
        utf8 = u32_at(mobi, 12) == Some(65001);
        if header_len >= 0xE4 {
            extra_flags = u16_at(mobi, 0xF2 - 16).unwrap_or(0);
        }
        let name_off = u32_at(mobi, 0x54 - 16).unwrap_or(0) as usize;
        let name_len = u32_at(mobi, 0x58 - 16).unwrap_or(0) as usize;
        title = header.get(name_off..name_off.saturating_add(name_len)).map(|n| decode(n, utf8));
        let exth_flags = u32_at(mobi, 0x80 - 16).unwrap_or(0);
        if exth_flags & 0x40 != 0 {
            if let Some(exth) = mobi.get(header_len..).filter(|e| e.starts_with(b"EXTH")) {
                for (kind, value) in exth_records(exth) {
                    match kind {
                        100 => author = Some(decode(value, utf8)),
                        503 => title = Some(decode(value, utf8)),
                        524 => language = Some(decode(value, utf8)),
                        _ => {}
                    }
                }
            }
        }
    }

    let mut raw = Vec::new();
    for (i, record) in records.iter().enumerate().skip(1).take(text_records) {
        let record = strip_trailing(record, extra_flags);
        if compression == 2 {
            palmdoc_decompress(record, &mut raw).map_err(|e| invalid(format!("text record {i}: {e}")))?;
        } else {
            raw.extend_from_slice(record);
        }
        if raw.len() > MAX_TEXT {
            return Err(invalid(format!("the text decompresses to more than {} MiB", MAX_TEXT >> 20)));
        }
    }
    let text = decode(&raw, utf8);
    let mut doc = if is_markup(&text) {
        html::parse(&strip_mbp_tags(&text))
    } else {
        super::txt::parse(&text)
    };
    // The HTML has no <title>: keep the book's own metadata.
    doc.title = title.filter(|t| !t.trim().is_empty()).or(doc.title);
    doc.author = author.filter(|a| !a.trim().is_empty()).or(doc.author);
    doc.language = language.filter(|l| !l.trim().is_empty());
    Ok(doc)
}

/// Removes Mobipocket's own tags (`<mbp:pagebreak/>`, `<mbp:section>`, …).
/// An HTML parser does not honour `/>` on unknown elements, so each page
/// break would otherwise open an element that nests the rest of the book.
fn strip_mbp_tags(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(at) = rest.find("<mbp:").or_else(|| rest.find("</mbp:")) {
        let at = [rest.find("<mbp:"), rest.find("</mbp:")].into_iter().flatten().min().unwrap_or(at);
        out.push_str(&rest[..at]);
        match rest[at..].find('>') {
            Some(end) => {
                // A page break separates blocks.
                out.push_str("<br>");
                rest = &rest[at + end + 1..];
            }
            None => {
                rest = "";
            }
        }
    }
    out.push_str(rest);
    out
}

fn is_markup(text: &str) -> bool {
    let head = &text[..text.floor_char_boundary(4096)];
    head.contains("<html") || head.contains("<body") || head.contains("<p") || head.contains("<mbp:")
}

fn decode(bytes: &[u8], utf8: bool) -> String {
    if utf8 {
        String::from_utf8_lossy(bytes).trim().to_string()
    } else {
        encoding_rs::WINDOWS_1252.decode(bytes).0.trim().to_string()
    }
}

/// EXTH records as (type, value).
fn exth_records(exth: &[u8]) -> Vec<(u32, &[u8])> {
    let count = u32_at(exth, 8).unwrap_or(0).min(10_000) as usize;
    let mut out = Vec::new();
    let mut at = 12usize;
    for _ in 0..count {
        let (Some(kind), Some(len)) = (u32_at(exth, at), u32_at(exth, at + 4)) else {
            break;
        };
        let len = len as usize;
        if len < 8 {
            break;
        }
        let Some(value) = exth.get(at + 8..at + len) else { break };
        out.push((kind, value));
        at += len;
    }
    out
}

/// Removes the trailing entries that MOBI appends to text records
/// (`extra_flags` in the MOBI header says which).
fn strip_trailing(record: &[u8], extra_flags: u16) -> &[u8] {
    let mut size = record.len();
    let mut flags = extra_flags >> 1;
    while flags != 0 {
        if flags & 1 != 0 {
            // A backward-encoded variable-width length at the end.
            let (mut value, mut shift, mut pos) = (0usize, 0, size);
            while pos > 0 {
                let byte = record[pos - 1];
                value |= usize::from(byte & 0x7F) << shift;
                shift += 7;
                pos -= 1;
                if byte & 0x80 != 0 || shift >= 28 {
                    break;
                }
            }
            size = size.saturating_sub(value);
        }
        flags >>= 1;
    }
    if extra_flags & 1 != 0 && size > 0 {
        size = size.saturating_sub(usize::from(record[size - 1] & 3) + 1);
    }
    &record[..size]
}

/// PalmDOC's LZ77 variant, appending to `out`.
fn palmdoc_decompress(input: &[u8], out: &mut Vec<u8>) -> Result<(), String> {
    let start = out.len();
    let mut i = 0;
    while i < input.len() {
        let c = input[i];
        i += 1;
        match c {
            1..=8 => {
                let end = i + c as usize;
                let literal = input.get(i..end).ok_or("literal run past the end")?;
                out.extend_from_slice(literal);
                i = end;
            }
            0x00 | 0x09..=0x7F => out.push(c),
            0xC0..=0xFF => {
                out.push(b' ');
                out.push(c ^ 0x80);
            }
            0x80..=0xBF => {
                let next = *input.get(i).ok_or("back-reference past the end")?;
                i += 1;
                let pair = (u16::from(c) << 8) | u16::from(next);
                let distance = usize::from((pair >> 3) & 0x07FF);
                let length = usize::from(pair & 7) + 3;
                if distance == 0 || distance > out.len() - start {
                    return Err(format!("back-reference to {distance} bytes before the start"));
                }
                for _ in 0..length {
                    out.push(out[out.len() - distance]);
                }
            }
        }
        if out.len() - start > MAX_RECORD {
            return Err(format!("a record decompresses to more than {MAX_RECORD} bytes"));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn palmdoc_literals_spaces_and_back_references() {
        // "abc" literal, " d" via the space+char code, then copy "abc" (distance 5, length 3).
        let pair: u16 = 5 << 3; // distance 5; length 3 is encoded as 0
        let input = [b'a', b'b', b'c', 0x80 ^ b'd', 0x80 | (pair >> 8) as u8, pair as u8];
        let mut out = Vec::new();
        palmdoc_decompress(&input, &mut out).unwrap();
        assert_eq!(out, b"abc dabc");
    }

    #[test]
    fn mobipocket_tags_are_removed() {
        assert_eq!(
            strip_mbp_tags("<p>a</p><mbp:pagebreak/><p>b</p></mbp:section>"),
            "<p>a</p><br><p>b</p><br>"
        );
    }

    #[test]
    fn bad_back_reference_is_an_error_not_a_panic() {
        let mut out = Vec::new();
        assert!(palmdoc_decompress(&[0x80, 0xFF], &mut out).is_err());
        assert!(palmdoc_decompress(&[5, b'a'], &mut out).is_err());
    }

    /// A synthetic book of `fuzz/seeds/mobi/` (written by `scripts/mobi-seeds`).
    fn seed(name: &str) -> Document {
        let path = format!("{}/../fuzz/seeds/mobi/{name}", env!("CARGO_MANIFEST_DIR"));
        parse(&std::fs::read(&path).unwrap_or_else(|e| panic!("{path}: {e}"))).unwrap_or_else(|e| panic!("{name}: {e}"))
    }

    fn headings(doc: &Document) -> Vec<&str> {
        doc.blocks
            .iter()
            .filter(|b| b.heading_level.is_some())
            .map(|b| b.text.as_str())
            .collect()
    }

    #[test]
    fn a_palmdoc_book_with_exth_metadata_parses_into_chapters() {
        for name in ["synthetic-palmdoc-exth.mobi", "synthetic-trailing-entries.mobi"] {
            let doc = seed(name);
            assert_eq!(
                doc.title.as_deref(),
                Some("Pride and Prejudice"),
                "{name}: EXTH 503 wins over the name"
            );
            assert_eq!(doc.author.as_deref(), Some("Jane Austen"), "{name}");
            assert_eq!(doc.language.as_deref(), Some("en"), "{name}");
            assert_eq!(headings(&doc), ["Chapter 1", "Chapter 2"], "{name}: the page break ends chapter 1");
            let paragraphs: Vec<&str> = doc
                .blocks
                .iter()
                .filter(|b| b.heading_level.is_none())
                .map(|b| b.text.as_str())
                .collect();
            assert_eq!(paragraphs.len(), 12, "{name}");
            // Back-references and trailing entries decoded exactly: every
            // paragraph is the sentence the generator wrote, nothing else.
            assert!(
                paragraphs
                    .iter()
                    .all(|p| p.starts_with("It is a truth universally acknowledged") && p.ends_with("so well fixed.")),
                "{name}: {paragraphs:?}"
            );
        }
    }

    #[test]
    fn an_uncompressed_windows_1252_book_and_a_plain_palmdoc_parse() {
        let doc = seed("synthetic-uncompressed-cp1252.mobi");
        assert_eq!(headings(&doc), ["Café"]);
        assert_eq!(doc.author.as_deref(), Some("Brontë"));
        assert!(doc.blocks.iter().any(|b| b.text == "Naïve résumé."), "{:?}", doc.blocks);
        let plain = seed("synthetic-textread.pdb");
        let text: String = plain.blocks.iter().map(|b| b.text.as_str()).collect::<Vec<_>>().join(" ");
        assert_eq!(text.matches("Plain PalmDOC text.").count(), 20, "{text}");
    }

    #[test]
    fn trailing_multibyte_and_size_entries_are_stripped() {
        // Text, then the multibyte byte (0 → itself only), then a 3-byte
        // entry whose size (0x83: 3, high bit ends the backward number) is last.
        let record = [b'h', b'e', b'l', b'l', b'o', 0x00, 0xAA, 0xBB, 0x83];
        assert_eq!(strip_trailing(&record, 0b11), b"hello");
        let no_multibyte = [b'h', b'e', b'l', b'l', b'o', 0xAA, 0xBB, 0x83];
        assert_eq!(strip_trailing(&no_multibyte, 0b10), b"hello");
    }
}
