//! How a place in a book is written for people: "Title — Chapter — p. 57".
//! The daemon's prompts, the CLI and the desktop app all show it, so it is
//! formatted in one place.

/// "Title — Chapter — p. N", leaving out the chapter or page when empty.
/// `page` is the label a reader sees printed ("iv", "57").
pub fn place(title: &str, chapter: &str, page: &str) -> String {
    let mut place = title.to_string();
    if !chapter.is_empty() {
        place.push_str(" — ");
        place.push_str(chapter);
    }
    if !page.is_empty() {
        place.push_str(" — p. ");
        place.push_str(page);
    }
    place
}

#[cfg(test)]
mod tests {
    use super::place;

    #[test]
    fn leaves_out_what_is_unknown() {
        assert_eq!(place("R intro", "Statistical models", "57"), "R intro — Statistical models — p. 57");
        assert_eq!(place("Emma", "", ""), "Emma");
        assert_eq!(place("Manual", "", "iv"), "Manual — p. iv");
    }
}
