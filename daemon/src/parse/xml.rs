//! A small pull-to-callback adapter over quick-xml for the XML-based formats
//! (DOCX, ODT, FB2): local names, unescaped text, empty elements reported as
//! a start and an end, and a clear error naming the position when the XML is
//! broken.

use quick_xml::events::Event;
use quick_xml::Reader;

use super::ParseError;

/// One XML event with namespace prefixes stripped.
#[derive(Debug, Clone, PartialEq)]
pub enum XmlEvent {
    /// An opening (or empty) element with its attributes.
    Start {
        /// Local name.
        name: String,
        /// (local name, unescaped value) pairs.
        attrs: Vec<(String, String)>,
    },
    /// A closing element (also sent right after an empty element).
    End {
        /// Local name.
        name: String,
    },
    /// Character data, entities resolved.
    Text(String),
}

fn local(name: &[u8]) -> String {
    let name = String::from_utf8_lossy(name);
    name.rsplit(':').next().unwrap_or(&name).to_string()
}

/// Calls `on_event` for every event of `xml`; `what` names the document in errors.
pub fn walk(xml: &str, what: &str, mut on_event: impl FnMut(XmlEvent)) -> Result<(), ParseError> {
    let mut reader = Reader::from_str(xml);
    let broken = |reader: &Reader<&[u8]>, e: &dyn std::fmt::Display| {
        ParseError::Invalid(format!("{what} is not well-formed XML at byte {}: {e}", reader.buffer_position()))
    };
    loop {
        match reader.read_event() {
            Ok(Event::Start(e)) => on_event(XmlEvent::Start {
                name: local(e.name().as_ref()),
                attrs: attrs(&e),
            }),
            Ok(Event::Empty(e)) => {
                let name = local(e.name().as_ref());
                on_event(XmlEvent::Start {
                    name: name.clone(),
                    attrs: attrs(&e),
                });
                on_event(XmlEvent::End { name });
            }
            Ok(Event::End(e)) => on_event(XmlEvent::End {
                name: local(e.name().as_ref()),
            }),
            Ok(Event::Text(t)) => on_event(XmlEvent::Text(t.decode().map_err(|e| broken(&reader, &e))?.into_owned())),
            Ok(Event::CData(t)) => on_event(XmlEvent::Text(t.decode().map_err(|e| broken(&reader, &e))?.into_owned())),
            Ok(Event::GeneralRef(r)) => {
                let text = match r.resolve_char_ref() {
                    Ok(Some(c)) => c.to_string(),
                    _ => {
                        let name = r.decode().map_err(|e| broken(&reader, &e))?;
                        quick_xml::escape::resolve_predefined_entity(&name).map_or_else(|| format!("&{name};"), str::to_string)
                    }
                };
                on_event(XmlEvent::Text(text));
            }
            Ok(Event::Eof) => return Ok(()),
            Ok(_) => {}
            Err(e) => return Err(broken(&reader, &e)),
        }
    }
}

fn attrs(e: &quick_xml::events::BytesStart) -> Vec<(String, String)> {
    e.attributes()
        .flatten()
        .map(|a| {
            (
                local(a.key.as_ref()),
                a.unescape_value()
                    .map(|v| v.into_owned())
                    .unwrap_or_else(|_| String::from_utf8_lossy(&a.value).into_owned()),
            )
        })
        .collect()
}

/// The value of attribute `name` (local name).
pub fn attr<'a>(attrs: &'a [(String, String)], name: &str) -> Option<&'a str> {
    attrs.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str())
}

/// Text of the first element named `element` in `xml` (metadata lookups).
pub fn first_text(xml: &str, element: &str) -> Option<String> {
    let mut depth = 0usize;
    let mut found = String::new();
    let mut done = false;
    let _ = walk(xml, "metadata", |ev| match ev {
        XmlEvent::Start { name, .. } if !done && (depth > 0 || name == element) => depth += 1,
        XmlEvent::End { .. } if depth > 0 => {
            depth -= 1;
            if depth == 0 {
                done = true;
            }
        }
        XmlEvent::Text(t) if depth > 0 && !done => found.push_str(&t),
        _ => {}
    });
    let text = found.split_whitespace().collect::<Vec<_>>().join(" ");
    (!text.is_empty()).then_some(text)
}

/// Table rows being read, innermost last: cells of the open row and the
/// text of the open cell. A finished row becomes one "a | b | c" line.
#[derive(Default)]
pub struct Tables {
    rows: Vec<(Vec<String>, String)>,
}

impl Tables {
    /// A row starts.
    pub fn start_row(&mut self) {
        self.rows.push((Vec::new(), String::new()));
    }

    /// Adds a finished paragraph to the open cell; gives it back when no
    /// table is open.
    pub fn add_paragraph(&mut self, text: String) -> Option<String> {
        match self.rows.last_mut() {
            Some((_, cell)) => {
                if !cell.is_empty() {
                    cell.push(' ');
                }
                cell.push_str(&text);
                None
            }
            None => Some(text),
        }
    }

    /// The open cell ends.
    pub fn end_cell(&mut self) {
        if let Some((cells, cell)) = self.rows.last_mut() {
            cells.push(std::mem::take(cell));
        }
    }

    /// The open row ends; returns its line unless all cells were empty.
    pub fn end_row(&mut self) -> Option<String> {
        let (cells, _) = self.rows.pop()?;
        let line = cells.into_iter().filter(|c| !c.is_empty()).collect::<Vec<_>>().join(" | ");
        (!line.is_empty()).then_some(line)
    }
}
