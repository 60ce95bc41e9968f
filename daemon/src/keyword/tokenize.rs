//! The keyword index's tokenizer and the analyzers built on it.
//!
//! [`CjkTokenizer`] cuts text the way a reader searches it: a run of letters,
//! digits and combining marks outside the CJK scripts is one token; a run of
//! CJK ideographs, kana or hangul becomes overlapping character bigrams at
//! consecutive positions (a lone CJK character becomes a unigram). Chinese and
//! Japanese have no spaces between words, so bigrams are what lets a query
//! that is any substring of a passage find it, and consecutive positions are
//! what lets such a substring work as a phrase query. Everything else
//! (whitespace, punctuation, symbols, apostrophes) separates tokens and is
//! dropped. Offsets are byte offsets into the input.
//!
//! The analyzers ([`register`]) add lower-casing and ASCII folding, and for
//! the stemmed fields a Snowball stemmer. Index and query text always go
//! through the same analyzer, so the exact chain matters less than its
//! being shared.

use std::iter::Peekable;

pub use crate::text::is_cjk;
use std::str::CharIndices;

use tantivy::tokenizer::{
    AsciiFoldingFilter, Language, LowerCaser, RemoveLongFilter, Stemmer, TextAnalyzer, Token, TokenStream, Tokenizer, TokenizerManager,
};

/// Name of the unstemmed analyzer (the `exact` and `words` fields).
pub const PLAIN: &str = "mindory_plain";

/// Tokens longer than this many bytes are dropped: they are base64, URLs or
/// other noise nobody types, and tantivy rejects terms past 64 KiB.
const MAX_TOKEN_BYTES: usize = 100;

/// Whether `c` continues (or starts) a non-CJK word. Combining marks count,
/// or Devanagari, Tamil and other Indic words would break at every vowel sign.
fn is_word(c: char) -> bool {
    c.is_alphanumeric() || unicode_normalization::char::is_combining_mark(c)
}

/// The CJK-aware tokenizer described in the module doc.
#[derive(Clone, Default)]
pub struct CjkTokenizer {
    token: Token,
}

/// The token stream of [`CjkTokenizer`].
pub struct CjkTokenStream<'a> {
    text: &'a str,
    chars: Peekable<CharIndices<'a>>,
    token: &'a mut Token,
    /// Start of the last CJK character emitted as the second half of a
    /// bigram: while the run goes on, it starts the next bigram.
    cjk_prev: Option<usize>,
    next_position: usize,
}

impl Tokenizer for CjkTokenizer {
    type TokenStream<'a> = CjkTokenStream<'a>;

    fn token_stream<'a>(&'a mut self, text: &'a str) -> CjkTokenStream<'a> {
        self.token.reset();
        CjkTokenStream {
            text,
            chars: text.char_indices().peekable(),
            token: &mut self.token,
            cjk_prev: None,
            next_position: 0,
        }
    }
}

impl CjkTokenStream<'_> {
    fn emit(&mut self, from: usize, to: usize) -> bool {
        self.token.text.clear();
        self.token.text.push_str(&self.text[from..to]);
        self.token.offset_from = from;
        self.token.offset_to = to;
        self.token.position = self.next_position;
        self.token.position_length = 1;
        self.next_position += 1;
        true
    }

    /// If the next character is CJK, consumes it and returns its byte range.
    fn next_cjk(&mut self) -> Option<(usize, usize)> {
        let &(start, c) = self.chars.peek()?;
        if !is_cjk(c) {
            return None;
        }
        self.chars.next();
        Some((start, start + c.len_utf8()))
    }
}

impl TokenStream for CjkTokenStream<'_> {
    fn advance(&mut self) -> bool {
        // Inside a CJK run: the next bigram starts at the previous character.
        if let Some(prev) = self.cjk_prev {
            match self.next_cjk() {
                Some((start, end)) => {
                    self.cjk_prev = Some(start);
                    return self.emit(prev, end);
                }
                None => self.cjk_prev = None,
            }
        }
        while let Some((start, c)) = self.chars.next() {
            if is_cjk(c) {
                let first_end = start + c.len_utf8();
                return match self.next_cjk() {
                    Some((second, end)) => {
                        self.cjk_prev = Some(second);
                        self.emit(start, end)
                    }
                    None => self.emit(start, first_end),
                };
            }
            if is_word(c) {
                let mut end = start + c.len_utf8();
                while let Some(&(i, c)) = self.chars.peek() {
                    if is_cjk(c) || !is_word(c) {
                        break;
                    }
                    end = i + c.len_utf8();
                    self.chars.next();
                }
                return self.emit(start, end);
            }
        }
        false
    }

    fn token(&self) -> &Token {
        self.token
    }

    fn token_mut(&mut self) -> &mut Token {
        self.token
    }
}

/// A stemming language tantivy supports, with the short code that names its
/// field (`words_<code>`) and analyzer (`mindory_<code>`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum StemLang {
    /// English.
    En,
    /// German.
    De,
    /// French.
    Fr,
    /// Spanish.
    Es,
    /// Italian.
    It,
    /// Portuguese.
    Pt,
    /// Dutch.
    Nl,
    /// Swedish.
    Sv,
    /// Danish.
    Da,
    /// Norwegian (Bokmål and Nynorsk).
    No,
    /// Finnish.
    Fi,
    /// Russian.
    Ru,
    /// Hungarian.
    Hu,
    /// Romanian.
    Ro,
    /// Turkish.
    Tr,
    /// Greek.
    El,
    /// Arabic.
    Ar,
    /// Tamil.
    Ta,
}

impl StemLang {
    /// Every supported language, in field order.
    pub const ALL: [StemLang; 18] = [
        StemLang::En,
        StemLang::De,
        StemLang::Fr,
        StemLang::Es,
        StemLang::It,
        StemLang::Pt,
        StemLang::Nl,
        StemLang::Sv,
        StemLang::Da,
        StemLang::No,
        StemLang::Fi,
        StemLang::Ru,
        StemLang::Hu,
        StemLang::Ro,
        StemLang::Tr,
        StemLang::El,
        StemLang::Ar,
        StemLang::Ta,
    ];

    /// The ISO 639-1 code.
    pub fn code(self) -> &'static str {
        match self {
            StemLang::En => "en",
            StemLang::De => "de",
            StemLang::Fr => "fr",
            StemLang::Es => "es",
            StemLang::It => "it",
            StemLang::Pt => "pt",
            StemLang::Nl => "nl",
            StemLang::Sv => "sv",
            StemLang::Da => "da",
            StemLang::No => "no",
            StemLang::Fi => "fi",
            StemLang::Ru => "ru",
            StemLang::Hu => "hu",
            StemLang::Ro => "ro",
            StemLang::Tr => "tr",
            StemLang::El => "el",
            StemLang::Ar => "ar",
            StemLang::Ta => "ta",
        }
    }

    fn tantivy(self) -> Language {
        match self {
            StemLang::En => Language::English,
            StemLang::De => Language::German,
            StemLang::Fr => Language::French,
            StemLang::Es => Language::Spanish,
            StemLang::It => Language::Italian,
            StemLang::Pt => Language::Portuguese,
            StemLang::Nl => Language::Dutch,
            StemLang::Sv => Language::Swedish,
            StemLang::Da => Language::Danish,
            StemLang::No => Language::Norwegian,
            StemLang::Fi => Language::Finnish,
            StemLang::Ru => Language::Russian,
            StemLang::Hu => Language::Hungarian,
            StemLang::Ro => Language::Romanian,
            StemLang::Tr => Language::Turkish,
            StemLang::El => Language::Greek,
            StemLang::Ar => Language::Arabic,
            StemLang::Ta => Language::Tamil,
        }
    }

    /// Name of this language's analyzer.
    pub fn analyzer(self) -> String {
        format!("mindory_{}", self.code())
    }

    /// The stemmer for the language of a metadata tag, if it has one.
    /// Accepts BCP-47 tags in any case ("en", "de-DE", "EN", "pt_BR"), ISO
    /// 639-2 codes ("eng", "ger", "deu") and English names ("English"),
    /// which all occur in real EPUB, FB2 and MOBI metadata.
    pub fn from_tag(tag: &str) -> Option<StemLang> {
        let primary = tag.trim().split(['-', '_']).next()?.to_ascii_lowercase();
        let lang = match primary.as_str() {
            "en" | "eng" | "english" => StemLang::En,
            "de" | "deu" | "ger" | "german" | "deutsch" => StemLang::De,
            "fr" | "fra" | "fre" | "french" | "français" | "francais" => StemLang::Fr,
            "es" | "spa" | "spanish" | "español" | "espanol" => StemLang::Es,
            "it" | "ita" | "italian" | "italiano" => StemLang::It,
            "pt" | "por" | "portuguese" | "português" | "portugues" => StemLang::Pt,
            "nl" | "nld" | "dut" | "dutch" | "nederlands" => StemLang::Nl,
            "sv" | "swe" | "swedish" | "svenska" => StemLang::Sv,
            "da" | "dan" | "danish" | "dansk" => StemLang::Da,
            "no" | "nor" | "nb" | "nob" | "nn" | "nno" | "norwegian" | "norsk" => StemLang::No,
            "fi" | "fin" | "finnish" | "suomi" => StemLang::Fi,
            "ru" | "rus" | "russian" => StemLang::Ru,
            "hu" | "hun" | "hungarian" | "magyar" => StemLang::Hu,
            "ro" | "ron" | "rum" | "romanian" => StemLang::Ro,
            "tr" | "tur" | "turkish" | "türkçe" => StemLang::Tr,
            "el" | "ell" | "gre" | "greek" => StemLang::El,
            "ar" | "ara" | "arb" | "arabic" => StemLang::Ar,
            "ta" | "tam" | "tamil" => StemLang::Ta,
            _ => return None,
        };
        Some(lang)
    }

    /// The stemmer for a language whatlang detected, if it has one.
    pub fn from_detected(lang: whatlang::Lang) -> Option<StemLang> {
        use whatlang::Lang;
        let lang = match lang {
            Lang::Eng => StemLang::En,
            Lang::Deu => StemLang::De,
            Lang::Fra => StemLang::Fr,
            Lang::Spa => StemLang::Es,
            Lang::Ita => StemLang::It,
            Lang::Por => StemLang::Pt,
            Lang::Nld => StemLang::Nl,
            Lang::Swe => StemLang::Sv,
            Lang::Dan => StemLang::Da,
            Lang::Nob => StemLang::No,
            Lang::Fin => StemLang::Fi,
            Lang::Rus => StemLang::Ru,
            Lang::Hun => StemLang::Hu,
            Lang::Ron => StemLang::Ro,
            Lang::Tur => StemLang::Tr,
            Lang::Ell => StemLang::El,
            Lang::Ara => StemLang::Ar,
            Lang::Tam => StemLang::Ta,
            _ => return None,
        };
        Some(lang)
    }
}

/// How much of a text [`detect_language`] reads.
pub const DETECT_BYTES: usize = 4096;

/// The stemming language of `sample` (its first [`DETECT_BYTES`]), when
/// whatlang is sure of it.
pub fn detect_language(sample: &str) -> Option<StemLang> {
    let mut end = sample.len().min(DETECT_BYTES);
    while !sample.is_char_boundary(end) {
        end -= 1;
    }
    let info = whatlang::detect(&sample[..end])?;
    if !info.is_reliable() {
        return None;
    }
    StemLang::from_detected(info.lang())
}

/// Tags that say "no particular language" rather than naming one: a book
/// carrying them is treated like one without a tag (its language is detected).
pub fn is_undetermined(tag: &str) -> bool {
    let primary = tag.trim().split(['-', '_']).next().unwrap_or("").to_ascii_lowercase();
    matches!(primary.as_str(), "" | "und" | "mul" | "zxx" | "mis")
}

/// The unstemmed analyzer: tokenize, drop noise tokens, lower-case, fold
/// accents to ASCII.
pub fn plain_analyzer() -> TextAnalyzer {
    TextAnalyzer::builder(CjkTokenizer::default())
        .filter(RemoveLongFilter::limit(MAX_TOKEN_BYTES))
        .filter(LowerCaser)
        .filter(AsciiFoldingFilter)
        .build()
}

/// The stemmed analyzer for `lang`. Folding comes before stemming so that a
/// query typed without accents ("eleve") stems like the accented text
/// ("élève") did.
pub fn stemmed_analyzer(lang: StemLang) -> TextAnalyzer {
    TextAnalyzer::builder(CjkTokenizer::default())
        .filter(RemoveLongFilter::limit(MAX_TOKEN_BYTES))
        .filter(LowerCaser)
        .filter(AsciiFoldingFilter)
        .filter(Stemmer::new(lang.tantivy()))
        .build()
}

/// Registers every analyzer the schema names on `manager`.
pub fn register(manager: &TokenizerManager) {
    manager.register(PLAIN, plain_analyzer());
    for lang in StemLang::ALL {
        manager.register(&lang.analyzer(), stemmed_analyzer(lang));
    }
}

/// The tokens `analyzer` makes of `text`, as (position, term text).
pub fn analyze(analyzer: &mut TextAnalyzer, text: &str) -> Vec<(usize, String)> {
    let mut out = Vec::new();
    let mut stream = analyzer.token_stream(text);
    while stream.advance() {
        let token = stream.token();
        out.push((token.position, token.text.clone()));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tokens(text: &str) -> Vec<(String, usize, usize, usize)> {
        let mut tokenizer = CjkTokenizer::default();
        let mut stream = tokenizer.token_stream(text);
        let mut out = Vec::new();
        while stream.advance() {
            let t = stream.token();
            assert_eq!(&text[t.offset_from..t.offset_to], t.text, "offsets are byte offsets into the input");
            out.push((t.text.clone(), t.position, t.offset_from, t.offset_to));
        }
        out
    }

    fn texts(text: &str) -> Vec<String> {
        tokens(text).into_iter().map(|t| t.0).collect()
    }

    #[test]
    fn words_split_on_punctuation_and_whitespace() {
        assert_eq!(texts("E: Unable to locate package"), ["E", "Unable", "to", "locate", "package"]);
        assert_eq!(texts("lapply(x, f)"), ["lapply", "x", "f"]);
        assert_eq!(texts("don't stop—Émile's 42nd"), ["don", "t", "stop", "Émile", "s", "42nd"]);
        assert!(texts(" ,.;!? ").is_empty());
        let positions: Vec<usize> = tokens("a b c").iter().map(|t| t.1).collect();
        assert_eq!(positions, [0, 1, 2]);
    }

    #[test]
    fn cjk_runs_become_overlapping_bigrams() {
        let t = tokens("我在年青时候");
        let expected = [("我在", 0), ("在年", 1), ("年青", 2), ("青时", 3), ("时候", 4)];
        assert_eq!(t.len(), expected.len());
        for ((text, position, ..), (want, want_position)) in t.iter().zip(expected) {
            assert_eq!((text.as_str(), *position), (want, want_position));
        }
        // A lone CJK character is a unigram; mixed text keeps positions consecutive.
        assert_eq!(texts("梦"), ["梦"]);
        assert_eq!(texts("iPhone手机很好。梦！OK"), ["iPhone", "手机", "机很", "很好", "梦", "OK"]);
        let positions: Vec<usize> = tokens("iPhone手机很好。梦！OK").iter().map(|t| t.1).collect();
        assert_eq!(positions, [0, 1, 2, 3, 4, 5]);
        // Kana and hangul too.
        assert_eq!(texts("ひらがな"), ["ひら", "らが", "がな"]);
        assert_eq!(texts("한국어 책"), ["한국", "국어", "책"]);
    }

    #[test]
    fn combining_marks_stay_inside_words() {
        // Tamil and Hindi vowel signs are combining marks.
        assert_eq!(texts("தமிழ் மொழி"), ["தமிழ்", "மொழி"]);
        assert_eq!(texts("हिन्दी भाषा"), ["हिन्दी", "भाषा"]);
    }

    #[test]
    fn analyzers_fold_and_stem() {
        let mut plain = plain_analyzer();
        let got: Vec<String> = analyze(&mut plain, "Élève CAFÉ").into_iter().map(|t| t.1).collect();
        assert_eq!(got, ["eleve", "cafe"]);
        let mut english = stemmed_analyzer(StemLang::En);
        let got: Vec<String> = analyze(&mut english, "loved loves loving").into_iter().map(|t| t.1).collect();
        assert_eq!(got, ["love", "love", "love"]);
        let long = "x".repeat(MAX_TOKEN_BYTES + 1);
        let got: Vec<(usize, String)> = analyze(&mut plain, &format!("a {long} b"));
        assert_eq!(
            got,
            [(0, "a".to_string()), (2, "b".to_string())],
            "long tokens drop but keep their position"
        );
    }

    #[test]
    fn language_tags() {
        assert_eq!(StemLang::from_tag("en"), Some(StemLang::En));
        assert_eq!(StemLang::from_tag("de-DE"), Some(StemLang::De));
        assert_eq!(StemLang::from_tag("EN"), Some(StemLang::En));
        assert_eq!(StemLang::from_tag("pt_BR"), Some(StemLang::Pt));
        assert_eq!(StemLang::from_tag("nb-NO"), Some(StemLang::No));
        assert_eq!(StemLang::from_tag("zh-Hans"), None);
        assert!(is_undetermined("") && is_undetermined("und") && !is_undetermined("zh"));
    }
}
