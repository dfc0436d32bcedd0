//! A deliberately small reader of `migrations/*.sql`: enough of CREATE TABLE, ALTER TABLE and
//! CREATE INDEX to know, per table, each column's type, its CHECK constraints, its generated
//! expression and the indexes over it, plus the bodies of views and functions. A statement it
//! does not understand on a table it tracks is an error, so a new kind of migration makes the
//! test fail rather than slip past it.

use std::collections::BTreeMap;
use std::path::Path;

#[derive(Debug, Clone, Default)]
pub struct Column {
    /// Lower case, whitespace collapsed: `bigint`, `text`, `varchar(64)`, `double precision`.
    pub ty: String,
    /// Inline CHECK expressions.
    pub checks: Vec<String>,
    /// `GENERATED ALWAYS AS (expr) STORED`.
    pub generated: Option<String>,
}

#[derive(Debug, Clone, Default)]
pub struct Table {
    /// In order of creation.
    pub columns: Vec<(String, Column)>,
    /// Table-level CHECK constraints, by name (Postgres' default name when unnamed).
    pub checks: BTreeMap<String, String>,
    /// Column lists of the primary key and of every index.
    pub indexes: Vec<Vec<String>>,
}

impl Table {
    pub fn column(&self, name: &str) -> Option<&Column> {
        self.columns.iter().find(|(n, _)| n == name).map(|(_, c)| c)
    }
    fn column_mut(&mut self, name: &str) -> &mut Column {
        match self.columns.iter_mut().find(|(n, _)| n == name) {
            Some((_, c)) => c,
            None => panic!("no column {name}"),
        }
    }
    /// Every CHECK that mentions `column`: its inline ones and the table's.
    pub fn checks_on(&self, column: &str) -> Vec<&str> {
        let mut out: Vec<&str> = self
            .column(column)
            .map(|c| c.checks.iter().map(String::as_str).collect())
            .unwrap_or_default();
        out.extend(
            self.checks
                .values()
                .filter(|e| idents(e).iter().any(|i| i == column))
                .map(String::as_str),
        );
        out
    }
}

#[derive(Debug, Default)]
pub struct Schema {
    pub tables: BTreeMap<String, Table>,
    /// Bodies of `CREATE VIEW` and `CREATE FUNCTION`, for the arithmetic check.
    pub bodies: Vec<String>,
}

/// Reads every `*.sql` file of `dir` in name order (the order sqlx applies them).
pub fn read_migrations(dir: &Path) -> Schema {
    let mut files: Vec<_> = std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.expect("dir entry").path())
        .filter(|p| p.extension().is_some_and(|x| x == "sql"))
        .collect();
    files.sort();
    assert!(!files.is_empty(), "no migrations in {}", dir.display());
    let mut schema = Schema::default();
    for f in files {
        let text = std::fs::read_to_string(&f).expect("readable migration");
        for stmt in statements(&text) {
            schema.apply(&stmt);
        }
    }
    schema
}

/// Splits SQL text into statements, with comments removed and whitespace collapsed; `;` inside
/// quotes and dollar-quoted bodies does not split.
pub fn statements(sql: &str) -> Vec<String> {
    let b = sql.as_bytes();
    let (mut out, mut cur) = (Vec::new(), String::new());
    let mut i = 0;
    while i < b.len() {
        let c = b[i] as char;
        if c == '-' && b.get(i + 1) == Some(&b'-') {
            while i < b.len() && b[i] != b'\n' {
                i += 1;
            }
            cur.push(' ');
            continue;
        }
        if c == '\'' {
            let start = i;
            i += 1;
            while i < b.len() && !(b[i] == b'\'' && b.get(i + 1) != Some(&b'\'')) {
                i += if b[i] == b'\'' { 2 } else { 1 };
            }
            i += 1;
            cur.push_str(&sql[start..i.min(b.len())]);
            continue;
        }
        if c == '$'
            && let Some(len) = sql[i + 1..].find('$')
            && sql[i + 1..i + 1 + len]
                .chars()
                .all(|c| c.is_alphanumeric() || c == '_')
        {
            let tag = &sql[i..i + len + 2];
            let end = sql[i + tag.len()..]
                .find(tag)
                .map_or(b.len(), |e| i + tag.len() + e + tag.len());
            cur.push_str(&sql[i..end]);
            i = end;
            continue;
        }
        if c == ';' {
            out.push(collapse(&cur));
            cur.clear();
        } else {
            cur.push(c);
        }
        i += 1;
    }
    out.push(collapse(&cur));
    out.retain(|s| !s.is_empty());
    out
}

fn collapse(s: &str) -> String {
    s.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// Splits at commas outside parentheses and quotes.
fn split_top(s: &str) -> Vec<String> {
    let (mut out, mut cur, mut depth, mut quoted) = (Vec::new(), String::new(), 0, false);
    for c in s.chars() {
        match c {
            '\'' => quoted = !quoted,
            '(' if !quoted => depth += 1,
            ')' if !quoted => depth -= 1,
            ',' if !quoted && depth == 0 => {
                out.push(cur.trim().to_owned());
                cur.clear();
                continue;
            }
            _ => {}
        }
        cur.push(c);
    }
    if !cur.trim().is_empty() {
        out.push(cur.trim().to_owned());
    }
    out
}

/// The text inside the parentheses that open at byte `open` of `s`, and the byte after them.
fn paren(s: &str, open: usize) -> (&str, usize) {
    assert_eq!(&s[open..open + 1], "(", "expected ( in {s:?}");
    let (mut depth, mut quoted) = (0, false);
    for (i, c) in s[open..].char_indices() {
        match c {
            '\'' => quoted = !quoted,
            '(' if !quoted => depth += 1,
            ')' if !quoted => {
                depth -= 1;
                if depth == 0 {
                    return (&s[open + 1..open + i], open + i + 1);
                }
            }
            _ => {}
        }
    }
    panic!("unbalanced parentheses in {s:?}")
}

/// The identifiers of an expression (lower case, qualifiers dropped), not those in quotes.
pub fn idents(expr: &str) -> Vec<String> {
    tokens(expr)
        .into_iter()
        .filter_map(|t| match t {
            Token::Ident(i) => Some(i),
            _ => None,
        })
        .collect()
}

#[derive(Debug, Clone, PartialEq)]
pub enum Token {
    /// Lower case, qualifier (`q.`) dropped.
    Ident(String),
    Number(i128),
    Str(String),
    Op(String),
}

/// Tokens of an expression: identifiers, integer literals, string literals, operators and
/// punctuation (`::`, `(`, `)`, `,` and the like as `Op`).
pub fn tokens(expr: &str) -> Vec<Token> {
    let c: Vec<char> = expr.chars().collect();
    let mut out = Vec::new();
    let mut i = 0;
    while i < c.len() {
        let ch = c[i];
        if ch.is_whitespace() {
            i += 1;
        } else if ch.is_alphabetic() || ch == '_' || ch == '"' {
            let start = i;
            while i < c.len()
                && (c[i].is_alphanumeric() || c[i] == '_' || c[i] == '"' || c[i] == '.')
            {
                i += 1;
            }
            let word: String = c[start..i].iter().filter(|&&x| x != '"').collect();
            let last = word.rsplit('.').next().unwrap_or_default().to_lowercase();
            out.push(Token::Ident(last));
        } else if ch.is_ascii_digit() {
            let start = i;
            while i < c.len() && (c[i].is_ascii_digit() || c[i] == '.' || c[i] == 'e') {
                i += 1;
            }
            let lit: String = c[start..i].iter().collect();
            match lit.parse::<i128>() {
                Ok(n) => out.push(Token::Number(n)),
                // a decimal or float literal: never bigint arithmetic
                Err(_) => out.push(Token::Op(lit)),
            }
        } else if ch == '\'' {
            let start = i + 1;
            i += 1;
            while i < c.len() && c[i] != '\'' {
                i += 1;
            }
            out.push(Token::Str(c[start..i.min(c.len())].iter().collect()));
            i += 1;
        } else if ch == ':' && c.get(i + 1) == Some(&':') {
            out.push(Token::Op("::".into()));
            i += 2;
        } else {
            out.push(Token::Op(ch.to_string()));
            i += 1;
        }
    }
    out
}

fn lower_words(s: &str) -> Vec<String> {
    s.split(' ').map(str::to_lowercase).collect()
}

/// Keywords that end a column's type in its definition.
const TYPE_END: [&str; 10] = [
    "not",
    "null",
    "default",
    "check",
    "generated",
    "primary",
    "references",
    "unique",
    "collate",
    "constraint",
];

impl Schema {
    fn apply(&mut self, stmt: &str) {
        let w = lower_words(stmt);
        let head: Vec<&str> = w.iter().take(4).map(String::as_str).collect();
        match head.as_slice() {
            ["create", "table", ..] => self.create_table(stmt),
            ["create", "index", ..] | ["create", "unique", "index", ..] => self.create_index(stmt),
            ["alter", "table", ..] => self.alter_table(stmt),
            ["create", "view", ..]
            | ["create", "or", "replace", "view"]
            | ["create", "function", ..]
            | ["create", "or", "replace", "function"] => self.bodies.push(stmt.to_owned()),
            _ => {}
        }
    }

    fn create_table(&mut self, stmt: &str) {
        let open = stmt.find('(').expect("CREATE TABLE (");
        let name = table_name(&stmt["create table".len()..open]);
        let (body, _) = paren(stmt, open);
        let mut t = Table::default();
        for item in split_top(body) {
            let lw = item.to_lowercase();
            if lw.starts_with("primary key") {
                let o = item.find('(').expect("PRIMARY KEY (");
                t.indexes.push(column_list(paren(&item, o).0));
            } else if lw.starts_with("check") {
                let o = item.find('(').expect("CHECK (");
                let n = format!("{name}_check{}", t.checks.len());
                t.checks.insert(n, paren(&item, o).0.to_owned());
            } else if lw.starts_with("unique") {
                // A unique constraint is a btree index like the primary key.
                let o = item.find('(').expect("UNIQUE (");
                t.indexes.push(column_list(paren(&item, o).0));
            } else if lw.starts_with("constraint")
                || lw.starts_with("foreign")
                || lw.starts_with("exclude")
            {
                panic!("{name}: table constraint the test does not read yet: {item}");
            } else {
                let (col, c) = column_def(&item);
                if lw.contains(" primary key") {
                    t.indexes.push(vec![col.clone()]);
                }
                t.columns.push((col, c));
            }
        }
        self.tables.insert(name, t);
    }

    fn create_index(&mut self, stmt: &str) {
        let lw = stmt.to_lowercase();
        let on = lw.find(" on ").expect("CREATE INDEX ... ON");
        let open = on + stmt[on..].find('(').expect("index columns");
        let rest: Vec<&str> = stmt[on + 4..open].split_whitespace().collect();
        let name = table_name(rest.first().expect("index table"));
        let cols = column_list(paren(stmt, open).0);
        if let Some(t) = self.tables.get_mut(&name) {
            t.indexes.push(cols);
        }
    }

    fn alter_table(&mut self, stmt: &str) {
        let words: Vec<&str> = stmt.split(' ').collect();
        let mut at = 2;
        if words[at].eq_ignore_ascii_case("if") {
            at += 2; // IF EXISTS
        }
        if words[at].eq_ignore_ascii_case("only") {
            at += 1;
        }
        let name = table_name(words[at]);
        let rest = words[at + 1..].join(" ");
        let Some(t) = self.tables.get_mut(&name) else {
            return;
        };
        for action in split_top(&rest) {
            let lw = lower_words(&action);
            let lw: Vec<&str> = lw.iter().map(String::as_str).collect();
            match lw.as_slice() {
                ["add", "column", ..] => {
                    let def = action.split_once(' ').unwrap().1.split_once(' ').unwrap().1;
                    let def = def
                        .strip_prefix("IF NOT EXISTS ")
                        .or_else(|| def.strip_prefix("if not exists "))
                        .unwrap_or(def);
                    let (col, c) = column_def(def);
                    t.columns.push((col, c));
                }
                ["alter", "column", col, "type", ..]
                | ["alter", "column", col, "set", "data", "type", ..] => {
                    let words: Vec<&str> = action.split(' ').collect();
                    let from = if lw[3] == "type" { 4 } else { 6 };
                    let ty: Vec<&str> = words[from..]
                        .iter()
                        .take_while(|w| {
                            !TYPE_END.contains(&w.to_lowercase().as_str())
                                && !w.eq_ignore_ascii_case("using")
                        })
                        .copied()
                        .collect();
                    t.column_mut(col).ty = ty.join(" ").to_lowercase();
                }
                ["alter", "column", _, "set", "not", "null"]
                | ["alter", "column", _, "drop", "not", "null"]
                | ["alter", "column", _, "set", "default", ..]
                | ["alter", "column", _, "drop", "default"]
                | ["set", ..]
                | ["reset", ..]
                | ["owner", ..] => {}
                ["add", "constraint", cname, "check", ..] => {
                    let o = action.find('(').expect("CHECK (");
                    t.checks
                        .insert((*cname).to_owned(), paren(&action, o).0.to_owned());
                }
                ["add", "primary", "key", ..] | ["add", "constraint", _, "unique", ..] => {
                    let o = action.find('(').expect("KEY (");
                    t.indexes.push(column_list(paren(&action, o).0));
                }
                ["drop", "constraint", cname] | ["drop", "constraint", "if", "exists", cname]
                    if cname.ends_with("_pkey") || cname.ends_with("_key") =>
                {
                    // A dropped primary key or unique index: keeping it in the list only checks
                    // one index more (conservative), and its replacement is added after.
                }
                ["drop", "constraint", cname] | ["drop", "constraint", "if", "exists", cname] => {
                    if t.checks.remove(*cname).is_none() {
                        // An inline column CHECK has the default name <table>_<column>_check.
                        let col = cname
                            .strip_prefix(&format!("{name}_"))
                            .and_then(|c| c.strip_suffix("_check"))
                            .unwrap_or_else(|| {
                                panic!("{name}: drop of unknown constraint {cname}")
                            });
                        t.column_mut(col).checks.clear();
                    }
                }
                ["drop", "column", col] | ["drop", "column", "if", "exists", col] => {
                    t.columns.retain(|(n, _)| n != col);
                }
                ["rename", "column", from, "to", to] => {
                    let (n, _) = t
                        .columns
                        .iter_mut()
                        .find(|(n, _)| n == from)
                        .unwrap_or_else(|| panic!("{name}: rename of unknown {from}"));
                    *n = (*to).to_owned();
                }
                _ => panic!("{name}: ALTER TABLE action the test does not read yet: {action}"),
            }
        }
    }
}

fn table_name(s: &str) -> String {
    let s = s.trim().to_lowercase();
    let s = s.strip_prefix("if not exists ").unwrap_or(&s).trim();
    s.rsplit('.')
        .next()
        .unwrap_or_default()
        .trim_matches('"')
        .to_owned()
}

fn column_list(s: &str) -> Vec<String> {
    split_top(s)
        .iter()
        .map(|c| {
            let first = c.split(' ').next().unwrap_or_default();
            first.trim_matches('"').to_lowercase()
        })
        .collect()
}

/// `name type [constraints]` of CREATE TABLE or ADD COLUMN.
fn column_def(def: &str) -> (String, Column) {
    let words: Vec<&str> = def.split(' ').collect();
    let name = words[0].trim_matches('"').to_lowercase();
    let ty: Vec<&str> = words[1..]
        .iter()
        .take_while(|w| !TYPE_END.contains(&w.to_lowercase().as_str()))
        .copied()
        .collect();
    let mut c = Column {
        ty: ty.join(" ").to_lowercase(),
        ..Column::default()
    };
    let lw = def.to_lowercase();
    let mut from = 0;
    while let Some(open) = keyword_paren(&lw, " check", from) {
        let (e, end) = paren(def, open);
        c.checks.push(e.to_owned());
        from = end;
    }
    if let Some(open) = keyword_paren(&lw, " generated always as", 0) {
        c.generated = Some(paren(def, open).0.to_owned());
    }
    (name, c)
}

/// The position of the `(` that follows the keyword `kw` (a whole word) at or after `from`.
fn keyword_paren(lw: &str, kw: &str, from: usize) -> Option<usize> {
    let mut at = from;
    while let Some(p) = lw[at..].find(kw) {
        let after = at + p + kw.len();
        let rest = lw[after..].trim_start();
        if rest.starts_with('(') {
            return Some(lw.len() - rest.len());
        }
        at = after;
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_forms_the_migrations_use() {
        let sql = "-- a comment; with a semicolon\n\
            CREATE TABLE t (a text NOT NULL CHECK (a IN ('x;', 'y')), b bigint NOT NULL,\n\
              c double precision GENERATED ALWAYS AS (b::double precision / 2) STORED,\n\
              PRIMARY KEY (a, b));\n\
            CREATE INDEX t_b ON t (b, a);\n\
            ALTER TABLE t ALTER COLUMN a TYPE text COLLATE \"C\", ADD COLUMN d varchar(10) NOT NULL;\n\
            ALTER TABLE t DROP CONSTRAINT t_a_check, ADD CONSTRAINT t_a_check CHECK (a <> '');\n\
            CREATE FUNCTION f() RETURNS int LANGUAGE sql AS $$ SELECT 1; $$;";
        let mut s = Schema::default();
        for st in statements(sql) {
            s.apply(&st);
        }
        let t = &s.tables["t"];
        assert_eq!(t.column("a").unwrap().ty, "text");
        assert!(t.column("a").unwrap().checks.is_empty());
        assert_eq!(t.checks_on("a"), vec!["a <> ''"]);
        assert_eq!(t.column("d").unwrap().ty, "varchar(10)");
        assert_eq!(
            t.column("c").unwrap().generated.as_deref(),
            Some("b::double precision / 2")
        );
        assert_eq!(t.indexes, vec![vec!["a", "b"], vec!["b", "a"]]);
        assert_eq!(s.bodies.len(), 1);
    }
}
