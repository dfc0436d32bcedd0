//! The lexer: SQL text to the tokens the fingerprint keeps.
//!
//! It is not a parser and never fails: any text gives tokens. Literals become
//! [`Token::Value`] as soon as they are read, comments and whitespace vanish, unquoted words are
//! lower-cased (ASCII only, so every language lower-cases them alike). The rules are the
//! numbered list in `docs/producers.md` ("Query fingerprint"), which the Python client
//! implements too; `testdata/fingerprint/vectors.json` holds both to it.

/// One kept token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Token {
    /// An unquoted word (keyword or identifier), ASCII-lower-cased.
    Word(String),
    /// A quoted identifier as rendered: bare when it is a plain lower-case name, else
    /// double-quoted with `"` doubled.
    Quoted(String),
    /// A literal or a placeholder, rendered `?`.
    Value,
    /// An operator or a punctuation mark.
    Punct(String),
}

/// Words after which a `-` or `+` is a sign, not a subtraction (rule 12).
const SIGN_AFTER: &[&str] = &[
    "and",
    "as",
    "between",
    "by",
    "case",
    "distinct",
    "else",
    "from",
    "having",
    "ilike",
    "in",
    "is",
    "like",
    "limit",
    "not",
    "offset",
    "on",
    "or",
    "return",
    "returning",
    "select",
    "set",
    "then",
    "values",
    "when",
    "where",
];

/// Characters that form operators (Postgres' set, without `?`, which is a placeholder here).
fn is_op_char(c: char) -> bool {
    matches!(
        c,
        '+' | '-' | '*' | '/' | '<' | '>' | '=' | '~' | '!' | '@' | '#' | '%' | '^' | '&' | '|'
    )
}

fn is_word_start(c: char) -> bool {
    c.is_ascii_alphabetic() || c == '_' || !c.is_ascii()
}

fn is_word_char(c: char) -> bool {
    is_word_start(c) || c.is_ascii_digit() || c == '$'
}

/// Whitespace as SQL knows it (ASCII only, identical in every language).
fn is_space(c: char) -> bool {
    matches!(c, ' ' | '\t' | '\n' | '\r' | '\x0b' | '\x0c')
}

struct Lexer {
    chars: Vec<char>,
    pos: usize,
    out: Vec<Token>,
}

/// Splits `sql` into tokens (rules 1 to 12 of the specification).
pub(crate) fn tokens(sql: &str) -> Vec<Token> {
    let mut lx = Lexer {
        chars: sql.chars().collect(),
        pos: 0,
        out: Vec::new(),
    };
    lx.run();
    lx.out
}

impl Lexer {
    fn at(&self, i: usize) -> Option<char> {
        self.chars.get(i).copied()
    }

    fn starts_with(&self, i: usize, s: &str) -> bool {
        s.chars()
            .enumerate()
            .all(|(k, c)| self.at(i + k) == Some(c))
    }

    fn run(&mut self) {
        while let Some(c) = self.at(self.pos) {
            let i = self.pos;
            if is_space(c) {
                self.pos += 1;
            } else if self.starts_with(i, "--") {
                self.line_comment();
            } else if self.starts_with(i, "/*") {
                self.block_comment();
            } else if c == '\'' {
                self.pos = self.string_end(i + 1, false);
                self.out.push(Token::Value);
            } else if c == '"' || c == '`' {
                self.quoted(c);
            } else if c.is_ascii_digit()
                || (c == '.' && self.at(i + 1).is_some_and(|d| d.is_ascii_digit()))
            {
                self.number();
            } else if is_word_start(c) {
                self.word();
            } else if c == '$' {
                self.dollar();
            } else if c == '?' {
                self.pos += 1;
                self.out.push(Token::Value);
            } else if c == '%' && self.python_placeholder() {
                self.out.push(Token::Value);
            } else if c == ':' {
                let len = if self.at(i + 1) == Some(':') { 2 } else { 1 };
                self.pos += len;
                self.out.push(Token::Punct(":".repeat(len)));
            } else if is_op_char(c) {
                self.operator();
            } else {
                self.pos += 1;
                self.out.push(Token::Punct(c.to_string()));
            }
        }
    }

    /// Rule 2: `--` to the end of the line.
    fn line_comment(&mut self) {
        while let Some(c) = self.at(self.pos) {
            self.pos += 1;
            if c == '\n' {
                break;
            }
        }
    }

    /// Rule 2: `/* */`, nested as in Postgres; unterminated runs to the end.
    fn block_comment(&mut self) {
        let mut depth = 0usize;
        while self.pos < self.chars.len() {
            if self.starts_with(self.pos, "/*") {
                depth += 1;
                self.pos += 2;
            } else if self.starts_with(self.pos, "*/") {
                depth -= 1;
                self.pos += 2;
                if depth == 0 {
                    return;
                }
            } else {
                self.pos += 1;
            }
        }
    }

    /// Rules 3 and 4: the position after the string whose body starts at `i`. `''` is a quote
    /// inside the string; with `backslash` (E'' strings) `\` escapes the next character.
    fn string_end(&self, mut i: usize, backslash: bool) -> usize {
        while let Some(c) = self.at(i) {
            if backslash && c == '\\' {
                i += 2;
            } else if c == '\'' {
                if self.at(i + 1) == Some('\'') {
                    i += 2;
                } else {
                    return i + 1;
                }
            } else {
                i += 1;
            }
        }
        self.chars.len()
    }

    /// Rule 6: `"…"` or `` `…` ``, the quote doubled inside.
    fn quoted(&mut self, q: char) {
        let mut name = String::new();
        let mut i = self.pos + 1;
        while let Some(c) = self.at(i) {
            if c == q {
                if self.at(i + 1) == Some(q) {
                    name.push(q);
                    i += 2;
                    continue;
                }
                i += 1;
                break;
            }
            name.push(c);
            i += 1;
        }
        self.pos = i.min(self.chars.len());
        let plain = name
            .chars()
            .next()
            .is_some_and(|c| c.is_ascii_lowercase() || c == '_')
            && name
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_' || c == '$');
        let rendered = if plain {
            name
        } else {
            format!("\"{}\"", name.replace('"', "\"\""))
        };
        self.out.push(Token::Quoted(rendered));
    }

    /// Rule 7: a number, with its sign folded in when the sign is unary (rule 12).
    fn number(&mut self) {
        let mut i = self.pos;
        let digits = |lx: &Self, mut i: usize| {
            while lx.at(i).is_some_and(|c| c.is_ascii_digit() || c == '_') {
                i += 1;
            }
            i
        };
        i = digits(self, i);
        if self.at(i) == Some('.') {
            i = digits(self, i + 1);
        }
        if matches!(self.at(i), Some('e' | 'E')) {
            let j = if matches!(self.at(i + 1), Some('+' | '-')) {
                i + 2
            } else {
                i + 1
            };
            if self.at(j).is_some_and(|c| c.is_ascii_digit()) {
                i = digits(self, j);
            }
        }
        while self
            .at(i)
            .is_some_and(|c| c.is_ascii_alphanumeric() || c == '_')
        {
            i += 1;
        }
        self.pos = i;
        self.fold_sign();
        self.out.push(Token::Value);
    }

    /// Rule 12: drops a `-` or `+` just before a number when nothing that ends a value
    /// precedes it.
    fn fold_sign(&mut self) {
        let n = self.out.len();
        let is_sign = matches!(self.out.last(), Some(Token::Punct(p)) if p == "-" || p == "+");
        if !is_sign {
            return;
        }
        let ends_value = match n.checked_sub(2).map(|k| &self.out[k]) {
            None => false,
            Some(Token::Value | Token::Quoted(_)) => true,
            Some(Token::Word(w)) => !SIGN_AFTER.contains(&w.as_str()),
            Some(Token::Punct(p)) => p == ")" || p == "]",
        };
        if !ends_value {
            self.out.pop();
        }
    }

    /// Rules 4 and 8: a word, or a string prefix (`E'`, `N'`, `B'`, `X'`).
    fn word(&mut self) {
        let start = self.pos;
        let mut i = start;
        while self.at(i).is_some_and(is_word_char) {
            i += 1;
        }
        let word: String = self.chars[start..i]
            .iter()
            .map(|c| c.to_ascii_lowercase())
            .collect();
        if self.at(i) == Some('\'') && matches!(word.as_str(), "e" | "n" | "b" | "x") {
            self.pos = self.string_end(i + 1, word == "e");
            self.out.push(Token::Value);
            return;
        }
        self.pos = i;
        self.out.push(Token::Word(word));
    }

    /// Rule 5: `$1` placeholders and `$tag$…$tag$` strings; any other `$` is punctuation.
    fn dollar(&mut self) {
        let i = self.pos + 1;
        if self.at(i).is_some_and(|c| c.is_ascii_digit()) {
            let mut j = i;
            while self.at(j).is_some_and(|c| c.is_ascii_digit()) {
                j += 1;
            }
            self.pos = j;
            self.out.push(Token::Value);
            return;
        }
        let mut j = i;
        if self.at(j).is_some_and(is_word_start) {
            while self.at(j).is_some_and(|c| is_word_char(c) && c != '$') {
                j += 1;
            }
        }
        if self.at(j) != Some('$') {
            self.pos += 1;
            self.out.push(Token::Punct("$".into()));
            return;
        }
        let delim: String = self.chars[self.pos..=j].iter().collect();
        let mut k = j + 1;
        while k < self.chars.len() && !self.starts_with(k, &delim) {
            k += 1;
        }
        self.pos = (k + delim.chars().count()).min(self.chars.len());
        self.out.push(Token::Value);
    }

    /// Rule 9: `%s` and `%(name)s` (Python DB-API placeholders); advances past it if found.
    fn python_placeholder(&mut self) -> bool {
        let i = self.pos;
        match self.at(i + 1) {
            Some('s') => {
                self.pos = i + 2;
                true
            }
            Some('(') => {
                let mut j = i + 2;
                while self.at(j).is_some_and(|c| c != ')' && c != '\n') {
                    j += 1;
                }
                if self.at(j) == Some(')') && self.at(j + 1) == Some('s') {
                    self.pos = j + 2;
                    true
                } else {
                    false
                }
            }
            _ => false,
        }
    }

    /// Rule 10: the longest run of operator characters, cut before a comment or a `%s`
    /// placeholder; a run of several characters does not end in `+` or `-` unless it
    /// contains one of `~ ! @ # % ^ & |` (Postgres' rule), so `=-1` is `=` and `-1`.
    fn operator(&mut self) {
        let start = self.pos;
        let mut end = start;
        while let Some(c) = self.at(end) {
            if !is_op_char(c)
                || (end > start
                    && (self.starts_with(end, "--")
                        || self.starts_with(end, "/*")
                        || (c == '%' && matches!(self.at(end + 1), Some('s' | '(')))))
            {
                break;
            }
            end += 1;
        }
        let special = self.chars[start..end]
            .iter()
            .any(|c| matches!(c, '~' | '!' | '@' | '#' | '%' | '^' | '&' | '|'));
        while end - start > 1 && !special && matches!(self.chars[end - 1], '+' | '-') {
            end -= 1;
        }
        self.pos = end;
        self.out
            .push(Token::Punct(self.chars[start..end].iter().collect()));
    }
}
