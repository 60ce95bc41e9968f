//! A minimal, safe wrapper over the few PDFium C functions the PDF parser
//! uses, loaded at run time from the `libpdfium.so` that `mindory models
//! fetch` installs.
//!
//! Why PDFium: it is the PDF engine of a browser, fuzzed continuously, and it
//! gets the hard parts right (font encodings, CID fonts, ToUnicode maps,
//! encryption, broken cross-reference tables). It is C++, so the daemon never
//! calls it in its own process: parsing runs in a sandboxed child (see
//! `parse::sandbox`), where a crash, a hang or a memory blow-up costs one
//! file, not the daemon. PDFium is not thread-safe; [`Pdfium`] serialises
//! every call behind one process-wide lock.

use std::ffi::{c_char, c_int, c_uint, c_ulong, c_void, CString};
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use parking_lot::{Mutex, MutexGuard};

type Doc = *mut c_void;
type Page = *mut c_void;
type TextPage = *mut c_void;
type Bookmark = *mut c_void;
type Dest = *mut c_void;
type Action = *mut c_void;
type PageObject = *mut c_void;

/// PDFium's error codes (`FPDF_GetLastError`).
const FPDF_ERR_FORMAT: c_ulong = 3;
const FPDF_ERR_PASSWORD: c_ulong = 4;
const FPDF_ERR_SECURITY: c_ulong = 5;
/// `FPDFPageObj_GetType` for images and text.
const FPDF_PAGEOBJ_TEXT: c_int = 1;
const FPDF_PAGEOBJ_IMAGE: c_int = 3;

/// The function table, resolved once when the library loads.
struct Fns {
    load_mem: unsafe extern "C" fn(*const c_void, usize, *const c_char) -> Doc,
    close_doc: unsafe extern "C" fn(Doc),
    last_error: unsafe extern "C" fn() -> c_ulong,
    page_count: unsafe extern "C" fn(Doc) -> c_int,
    load_page: unsafe extern "C" fn(Doc, c_int) -> Page,
    close_page: unsafe extern "C" fn(Page),
    page_width: unsafe extern "C" fn(Page) -> f32,
    page_height: unsafe extern "C" fn(Page) -> f32,
    count_objects: unsafe extern "C" fn(Page) -> c_int,
    get_object: unsafe extern "C" fn(Page, c_int) -> PageObject,
    object_type: unsafe extern "C" fn(PageObject) -> c_int,
    text_load: unsafe extern "C" fn(Page) -> TextPage,
    text_close: unsafe extern "C" fn(TextPage),
    text_count: unsafe extern "C" fn(TextPage) -> c_int,
    text_unicode: unsafe extern "C" fn(TextPage, c_int) -> c_uint,
    text_box: unsafe extern "C" fn(TextPage, c_int, *mut f64, *mut f64, *mut f64, *mut f64) -> c_int,
    text_font_size: unsafe extern "C" fn(TextPage, c_int) -> f64,
    text_generated: unsafe extern "C" fn(TextPage, c_int) -> c_int,
    page_label: unsafe extern "C" fn(Doc, c_int, *mut c_void, c_ulong) -> c_ulong,
    meta_text: unsafe extern "C" fn(Doc, *const c_char, *mut c_void, c_ulong) -> c_ulong,
    bm_first_child: unsafe extern "C" fn(Doc, Bookmark) -> Bookmark,
    bm_next_sibling: unsafe extern "C" fn(Doc, Bookmark) -> Bookmark,
    bm_title: unsafe extern "C" fn(Bookmark, *mut c_void, c_ulong) -> c_ulong,
    bm_dest: unsafe extern "C" fn(Doc, Bookmark) -> Dest,
    bm_action: unsafe extern "C" fn(Bookmark) -> Action,
    action_dest: unsafe extern "C" fn(Doc, Action) -> Dest,
    dest_page: unsafe extern "C" fn(Doc, Dest) -> c_int,
    dest_location: unsafe extern "C" fn(Dest, *mut c_int, *mut c_int, *mut c_int, *mut f32, *mut f32, *mut f32) -> c_int,
    security_revision: unsafe extern "C" fn(Doc) -> c_int,
    catalog_language: Option<unsafe extern "C" fn(Doc, *mut c_void, c_ulong) -> c_ulong>,
}

/// The loaded library. One per process.
pub struct Pdfium {
    // Kept alive for as long as the function pointers in `fns` are used.
    _lib: libloading::Library,
    fns: Fns,
}

// SAFETY: the raw function pointers are plain addresses into the loaded
// library; every call goes through the process-wide mutex in `load`.
unsafe impl Send for Pdfium {}

/// Why PDFium could not be used or a document could not be opened.
#[derive(Debug, Clone, thiserror::Error, PartialEq)]
pub enum PdfiumError {
    /// The shared library is missing or lacks a function.
    #[error("cannot load the PDF engine from {path}: {detail}; run `mindory models fetch`")]
    Load {
        /// Where it was looked for.
        path: PathBuf,
        /// The loader's message.
        detail: String,
    },
    /// The document needs a password.
    #[error("encrypted: the PDF needs a password to open")]
    Encrypted,
    /// The document uses an unsupported security handler.
    #[error("encrypted: unsupported security handler")]
    Security,
    /// PDFium could not make sense of the file.
    #[error("damaged PDF: {0}")]
    Damaged(String),
}

static PDFIUM: OnceLock<Result<Mutex<Pdfium>, PdfiumError>> = OnceLock::new();

/// Loads PDFium from `path` once per process and locks it for the caller.
pub fn load(path: &Path) -> Result<MutexGuard<'static, Pdfium>, PdfiumError> {
    match PDFIUM.get_or_init(|| Pdfium::open(path).map(Mutex::new)) {
        Ok(lib) => Ok(lib.lock()),
        Err(e) => Err(e.clone()),
    }
}

impl Pdfium {
    fn open(path: &Path) -> Result<Self, PdfiumError> {
        let err = |detail: String| PdfiumError::Load {
            path: path.to_path_buf(),
            detail,
        };
        // SAFETY: loading PDFium runs its static initialisers, which have no
        // preconditions.
        let lib = unsafe { libloading::Library::new(path) }.map_err(|e| err(e.to_string()))?;
        macro_rules! sym {
            ($name:literal) => {
                // SAFETY: the signature matches PDFium's public headers.
                *unsafe { lib.get(concat!($name, "\0").as_bytes()) }.map_err(|e| err(format!("{}: {e}", $name)))?
            };
        }
        let init: unsafe extern "C" fn() = sym!("FPDF_InitLibrary");
        let fns = Fns {
            load_mem: sym!("FPDF_LoadMemDocument64"),
            close_doc: sym!("FPDF_CloseDocument"),
            last_error: sym!("FPDF_GetLastError"),
            page_count: sym!("FPDF_GetPageCount"),
            load_page: sym!("FPDF_LoadPage"),
            close_page: sym!("FPDF_ClosePage"),
            page_width: sym!("FPDF_GetPageWidthF"),
            page_height: sym!("FPDF_GetPageHeightF"),
            count_objects: sym!("FPDFPage_CountObjects"),
            get_object: sym!("FPDFPage_GetObject"),
            object_type: sym!("FPDFPageObj_GetType"),
            text_load: sym!("FPDFText_LoadPage"),
            text_close: sym!("FPDFText_ClosePage"),
            text_count: sym!("FPDFText_CountChars"),
            text_unicode: sym!("FPDFText_GetUnicode"),
            text_box: sym!("FPDFText_GetCharBox"),
            text_font_size: sym!("FPDFText_GetFontSize"),
            text_generated: sym!("FPDFText_IsGenerated"),
            page_label: sym!("FPDF_GetPageLabel"),
            meta_text: sym!("FPDF_GetMetaText"),
            bm_first_child: sym!("FPDFBookmark_GetFirstChild"),
            bm_next_sibling: sym!("FPDFBookmark_GetNextSibling"),
            bm_title: sym!("FPDFBookmark_GetTitle"),
            bm_dest: sym!("FPDFBookmark_GetDest"),
            bm_action: sym!("FPDFBookmark_GetAction"),
            action_dest: sym!("FPDFAction_GetDest"),
            dest_page: sym!("FPDFDest_GetDestPageIndex"),
            dest_location: sym!("FPDFDest_GetLocationInPage"),
            security_revision: sym!("FPDF_GetSecurityHandlerRevision"),
            // Newer PDFium builds only; the language is optional metadata.
            catalog_language: unsafe { lib.get(b"FPDFCatalog_GetLanguage\0") }.ok().map(|s| *s),
        };
        // SAFETY: called once, before any other PDFium function.
        unsafe { init() };
        Ok(Pdfium { _lib: lib, fns })
    }

    /// Opens a document from memory with an empty user password.
    pub fn open_document<'a>(&'a self, bytes: &'a [u8]) -> Result<Document<'a>, PdfiumError> {
        let empty = CString::default();
        // SAFETY: `bytes` outlives the document (the lifetime ties them), and
        // PDFium reads it without copying.
        let doc = unsafe { (self.fns.load_mem)(bytes.as_ptr().cast(), bytes.len(), empty.as_ptr()) };
        if doc.is_null() {
            // SAFETY: no preconditions.
            return Err(match unsafe { (self.fns.last_error)() } {
                FPDF_ERR_PASSWORD => PdfiumError::Encrypted,
                FPDF_ERR_SECURITY => PdfiumError::Security,
                FPDF_ERR_FORMAT => PdfiumError::Damaged("not a PDF or its structure is broken beyond repair".into()),
                code => PdfiumError::Damaged(format!("cannot open (PDFium error {code})")),
            });
        }
        Ok(Document { lib: self, doc })
    }
}

/// Reads a UTF-16LE string through PDFium's two-call buffer protocol
/// (ask for the length, then fill a buffer of that size).
fn utf16_string(mut call: impl FnMut(*mut c_void, c_ulong) -> c_ulong) -> Option<String> {
    let len = call(std::ptr::null_mut(), 0) as usize;
    if len <= 2 || len > 1 << 20 {
        return None;
    }
    let mut buf = vec![0u16; len.div_ceil(2)];
    let written = call(buf.as_mut_ptr().cast(), (buf.len() * 2) as c_ulong) as usize;
    let units = &buf[..(written / 2).min(buf.len())];
    let units = units.split(|&u| u == 0).next().unwrap_or_default();
    let text = String::from_utf16_lossy(units).trim().to_string();
    (!text.is_empty()).then_some(text)
}

/// An open document; closed on drop.
pub struct Document<'a> {
    lib: &'a Pdfium,
    doc: Doc,
}

impl Drop for Document<'_> {
    fn drop(&mut self) {
        // SAFETY: `doc` came from a successful load and is closed once.
        unsafe { (self.lib.fns.close_doc)(self.doc) }
    }
}

/// One entry of the document outline.
#[derive(Debug, Clone, PartialEq)]
pub struct OutlineEntry {
    /// Nesting depth, 1 for top-level entries.
    pub level: u8,
    /// The entry's title.
    pub title: String,
    /// Zero-based page the entry points at.
    pub page: usize,
    /// Vertical position on that page in PDF units (from the bottom), when given.
    pub y: Option<f32>,
}

/// A character PDFium found on a page, with its box in PDF units.
#[derive(Debug, Clone, Copy)]
pub struct Char {
    /// The character (PDFium's Unicode mapping).
    pub c: char,
    /// Left, right, bottom, top.
    pub left: f32,
    /// Right edge.
    pub right: f32,
    /// Bottom edge (PDF y grows upwards).
    pub bottom: f32,
    /// Top edge.
    pub top: f32,
    /// Font size in points.
    pub size: f32,
    /// PDFium inserted this space or line break; it is not in the file.
    pub generated: bool,
}

/// What one page holds.
#[derive(Debug, Default)]
pub struct PageContent {
    /// Width and height in PDF units.
    pub width: f32,
    /// Height in PDF units.
    pub height: f32,
    /// Characters in content order.
    pub chars: Vec<Char>,
    /// Number of image objects on the page.
    pub images: usize,
    /// Number of text objects on the page.
    pub text_objects: usize,
}

impl Document<'_> {
    fn fns(&self) -> &Fns {
        &self.lib.fns
    }

    /// Number of pages.
    pub fn page_count(&self) -> usize {
        // SAFETY: `doc` is open.
        unsafe { (self.fns().page_count)(self.doc) }.max(0) as usize
    }

    /// Whether the document is encrypted (opened with the empty password).
    pub fn is_encrypted(&self) -> bool {
        // SAFETY: `doc` is open.
        unsafe { (self.fns().security_revision)(self.doc) >= 0 }
    }

    /// A document-information entry ("Title", "Author", …).
    pub fn meta(&self, tag: &str) -> Option<String> {
        let tag = CString::new(tag).ok()?;
        // SAFETY: the buffer pointer and length come from `utf16_string`.
        utf16_string(|buf, len| unsafe { (self.fns().meta_text)(self.doc, tag.as_ptr(), buf, len) })
    }

    /// The catalog's /Lang entry, when PDFium can read it.
    pub fn language(&self) -> Option<String> {
        let f = self.fns().catalog_language?;
        // SAFETY: as for `meta`.
        utf16_string(|buf, len| unsafe { f(self.doc, buf, len) })
    }

    /// The label a reader sees for a zero-based page ("iv", "57", "A-3").
    pub fn page_label(&self, index: usize) -> Option<String> {
        // SAFETY: as for `meta`; out-of-range indices return 0.
        utf16_string(|buf, len| unsafe { (self.fns().page_label)(self.doc, index as c_int, buf, len) })
    }

    /// The outline, flattened in reading order, at most `limit` entries.
    /// Cycles (a broken outline can point back at itself) are cut.
    pub fn outline(&self, limit: usize) -> Vec<OutlineEntry> {
        let mut out = Vec::new();
        let mut seen = std::collections::HashSet::new();
        // Depth-first with an explicit stack: (bookmark, level).
        // SAFETY: a null parent asks for the first top-level entry.
        let first = unsafe { (self.fns().bm_first_child)(self.doc, std::ptr::null_mut()) };
        let mut stack = vec![(first, 1u8)];
        while let Some((bm, level)) = stack.pop() {
            if bm.is_null() || out.len() >= limit || !seen.insert(bm as usize) {
                continue;
            }
            // SAFETY: `bm` is a live bookmark handle of this document.
            let next = unsafe { (self.fns().bm_next_sibling)(self.doc, bm) };
            let child = unsafe { (self.fns().bm_first_child)(self.doc, bm) };
            stack.push((next, level));
            if level < 16 {
                stack.push((child, level + 1));
            }
            let title = utf16_string(|buf, len| unsafe { (self.fns().bm_title)(bm, buf, len) });
            let mut dest = unsafe { (self.fns().bm_dest)(self.doc, bm) };
            if dest.is_null() {
                let action = unsafe { (self.fns().bm_action)(bm) };
                if !action.is_null() {
                    dest = unsafe { (self.fns().action_dest)(self.doc, action) };
                }
            }
            if dest.is_null() {
                continue;
            }
            let page = unsafe { (self.fns().dest_page)(self.doc, dest) };
            let (mut has_x, mut has_y, mut has_zoom) = (0, 0, 0);
            let (mut x, mut y, mut zoom) = (0f32, 0f32, 0f32);
            let located = unsafe { (self.fns().dest_location)(dest, &mut has_x, &mut has_y, &mut has_zoom, &mut x, &mut y, &mut zoom) };
            if let (Some(title), Ok(page)) = (title, usize::try_from(page)) {
                out.push(OutlineEntry {
                    level,
                    title,
                    page,
                    y: (located != 0 && has_y != 0).then_some(y),
                });
            }
        }
        out
    }

    /// Loads one page's characters and object counts.
    pub fn page(&self, index: usize) -> Option<PageContent> {
        let f = self.fns();
        // SAFETY: every handle is checked for null and closed before return.
        unsafe {
            let page = (f.load_page)(self.doc, index as c_int);
            if page.is_null() {
                return None;
            }
            let mut content = PageContent {
                width: (f.page_width)(page),
                height: (f.page_height)(page),
                ..Default::default()
            };
            for i in 0..(f.count_objects)(page) {
                let obj = (f.get_object)(page, i);
                match (f.object_type)(obj) {
                    FPDF_PAGEOBJ_IMAGE => content.images += 1,
                    FPDF_PAGEOBJ_TEXT => content.text_objects += 1,
                    _ => {}
                }
            }
            let text = (f.text_load)(page);
            if !text.is_null() {
                let n = (f.text_count)(text).max(0);
                content.chars.reserve(n as usize);
                for i in 0..n {
                    let code = (f.text_unicode)(text, i);
                    let c = char::from_u32(code).unwrap_or('\u{FFFD}');
                    let (mut l, mut r, mut b, mut t) = (0f64, 0f64, 0f64, 0f64);
                    (f.text_box)(text, i, &mut l, &mut r, &mut b, &mut t);
                    content.chars.push(Char {
                        c,
                        left: l as f32,
                        right: r as f32,
                        bottom: b as f32,
                        top: t as f32,
                        size: (f.text_font_size)(text, i) as f32,
                        generated: (f.text_generated)(text, i) == 1,
                    });
                }
                (f.text_close)(text);
            }
            (f.close_page)(page);
            Some(content)
        }
    }
}
