//! Which passages are not the book's prose: tables of contents, back-of-book
//! indexes, licence boilerplate (Project Gutenberg's header and terms) and
//! bare fragments (a title or a heading with nothing under it).
//!
//! Such passages stay stored and readable (citations and `read` need the
//! whole text), but search ranks them below the prose: a 30-page table of
//! contents otherwise answers every topical query with a list of chapter
//! titles, and a lone heading embeds close to any short query. The rules
//! read only the passage's own text, so they work for any book and any
//! format, and a misjudged passage is demoted, never lost.

/// What a passage is, for ranking.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum PassageKind {
    /// Prose, verse, dialogue, tables: what the book says.
    Body,
    /// A table of contents: titles with dot leaders or page numbers.
    Contents,
    /// A back-of-book index: terms followed by lists of page numbers.
    Index,
    /// Licence and distribution boilerplate.
    Boilerplate,
    /// A heading or title alone, too short to stand for anything.
    Fragment,
}

impl PassageKind {
    /// Stable name, as stored and as clients show it.
    pub fn name(self) -> &'static str {
        match self {
            PassageKind::Body => "body",
            PassageKind::Contents => "contents",
            PassageKind::Index => "index",
            PassageKind::Boilerplate => "boilerplate",
            PassageKind::Fragment => "fragment",
        }
    }

    /// The stored byte (0 = body).
    pub fn code(self) -> u8 {
        match self {
            PassageKind::Body => 0,
            PassageKind::Contents => 1,
            PassageKind::Index => 2,
            PassageKind::Boilerplate => 3,
            PassageKind::Fragment => 4,
        }
    }

    /// The kind a stored byte stands for (unknown bytes read as body).
    pub fn from_code(code: u8) -> Self {
        match code {
            1 => PassageKind::Contents,
            2 => PassageKind::Index,
            3 => PassageKind::Boilerplate,
            4 => PassageKind::Fragment,
            _ => PassageKind::Body,
        }
    }
}

/// Words in a passage below which it is a fragment.
const FRAGMENT_WORDS: usize = 4;

/// Classifies one passage by its text.
pub fn classify(text: &str) -> PassageKind {
    let words: Vec<&str> = text.split_whitespace().collect();
    if words.len() < FRAGMENT_WORDS && !text.chars().any(super::is_cjk) {
        return PassageKind::Fragment;
    }
    if is_boilerplate(text) {
        return PassageKind::Boilerplate;
    }
    if leader_runs(text) >= 3 {
        return PassageKind::Contents;
    }
    // An index is mostly page numbers between short terms; a contents page
    // without leaders is titles each followed by one number.
    let numbers = words
        .iter()
        .filter(|w| {
            let w = w.trim_matches(|c: char| c == ',' || c == ';' || c == '.');
            !w.is_empty() && w.len() <= 5 && w.chars().all(|c| c.is_ascii_digit() || c == '–' || c == '-')
        })
        .count();
    let share = numbers as f32 / words.len() as f32;
    if words.len() >= 12 && share >= 0.3 && text.matches(',').count() * 3 >= numbers {
        return PassageKind::Index;
    }
    if words.len() >= 12 && share >= 0.2 && numbered_titles(text) >= 4 {
        return PassageKind::Contents;
    }
    PassageKind::Body
}

/// Dot leaders: runs of four or more ASCII dots (". . . ." or "....")
/// followed by a page number, as between a contents entry and its page.
/// Ellipses ("……" in Chinese prose, "...." trailing off in English) are not
/// followed by a number, so they do not count.
fn leader_runs(text: &str) -> usize {
    let mut runs = 0;
    let mut dots = 0;
    for c in text.chars() {
        match c {
            '.' => dots += 1,
            ' ' => {}
            _ => {
                if dots >= 4 && (c.is_ascii_digit() || c.is_ascii_lowercase() && "ivxlc".contains(c)) {
                    runs += 1;
                }
                dots = 0;
            }
        }
    }
    runs
}

/// Section numbers like "2.5" or "11.3.1" starting a title: a contents list
/// has many, prose has few.
fn numbered_titles(text: &str) -> usize {
    text.split_whitespace()
        .filter(|w| {
            let parts: Vec<&str> = w.trim_end_matches('.').split('.').collect();
            parts.len() >= 2
                && parts
                    .iter()
                    .all(|p| !p.is_empty() && p.len() <= 3 && p.chars().all(|c| c.is_ascii_digit()))
        })
        .count()
}

/// Project Gutenberg's header, licence and donation pages, and the like:
/// two or more of their stock phrases in one passage.
fn is_boilerplate(text: &str) -> bool {
    const MARKERS: &[&str] = &[
        "project gutenberg",
        "gutenberg.org",
        "gutenberg-tm",
        "literary archive foundation",
        "*** start of",
        "*** end of",
        "this ebook is for the use of anyone",
        "terms of the project",
        "full license",
        "trademark license",
        "refund",
        "electronic works",
    ];
    let lower = text.to_lowercase();
    MARKERS.iter().filter(|m| lower.contains(*m)).count() >= 2
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn contents_pages_with_leaders_or_numbered_titles() {
        let r_faq = "7.1 How can I set components of a list to NULL? . . . . . . . . . . 28 7.2 How can I save my workspace? . . . . . . . . 28 7.3 How can I clean up my workspace? . . . . . . . 28 7.4 How can I get eval() and D() to work? . . . . . 28";
        assert_eq!(classify(r_faq), PassageKind::Contents);
        let numbered = "1 Introduction 1 1.1 The R environment 1 1.2 Related software 2 1.3 R and statistics 2 1.4 R and the window system 3 2 Simple manipulations 7 2.1 Vectors 7";
        assert_eq!(classify(numbered), PassageKind::Contents);
    }

    #[test]
    fn back_of_book_indexes() {
        let index = "lapply, 45, 67, 112 layout, 80 legend, 71, 73 length, 9, 23, 30 levels, 51, 52 library, 8, 77, 78 lines, 70, 72 list, 26, 28, 29";
        assert_eq!(classify(index), PassageKind::Index);
    }

    #[test]
    fn gutenberg_boilerplate() {
        let licence = "This eBook is for the use of anyone anywhere at no cost and with almost no restrictions whatsoever. You may copy it, give it away or re-use it under the terms of the Project Gutenberg License included with this eBook or online at www.gutenberg.org";
        assert_eq!(classify(licence), PassageKind::Boilerplate);
    }

    #[test]
    fn prose_verse_and_numbers_in_prose_stay_body() {
        for body in [
            "It is a truth universally acknowledged, that a single man in possession of a good fortune, must be in want of a wife.",
            "'Twas brillig, and the slithy toves Did gyre and gimble in the wabe: All mimsy were the borogoves, And the mome raths outgrabe.",
            "The Senate of the United States shall be composed of two Senators from each State, chosen by the Legislature thereof, for six Years; and each Senator shall have one Vote.",
            "In 1790 the revenue was 4,399,473 dollars, in 1791 it was 3,443,070 dollars, and the debt stood at 75,463,476 dollars, of which 12,000,000 was owed abroad to France and Holland.",
            "我在年青时候也曾经做过许多梦，后来大半忘却了，但自己也并不以为可惜。",
            "他……他……他说……我不知道……后来……大家都走了……只剩下我一个人……",
            "Well.... I don't know.... Maybe.... We shall see what happens tomorrow, she said.",
        ] {
            assert_eq!(classify(body), PassageKind::Body, "{body}");
        }
        assert_eq!(classify("Metamorphosis"), PassageKind::Fragment);
        assert_eq!(classify("Franz Kafka"), PassageKind::Fragment);
    }

    #[test]
    fn codes_round_trip() {
        for kind in [
            PassageKind::Body,
            PassageKind::Contents,
            PassageKind::Index,
            PassageKind::Boilerplate,
            PassageKind::Fragment,
        ] {
            assert_eq!(PassageKind::from_code(kind.code()), kind);
        }
    }
}
