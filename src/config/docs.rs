//! The documentation of cache URLs, rendered from the parameter table.
//!
//! Four places hold a copy, each between a `BEGIN generated: url-params` and an
//! `END generated: url-params` marker line: README.md ("Cache URLs") and the module doc of
//! `config` get [`markdown`], the doc comment of `sesscache_open` (and through cbindgen
//! `include/sesscache.h`) gets [`plain`], the manual page `man/man5/sesscache-url.5` gets
//! [`roff`] (its markers are roff comments, `.\" BEGIN generated: ...`). The test
//! `generated_url_docs_are_current` compares them with what the table renders; with
//! `SESSCACHE_BLESS=1` it rewrites them.

use super::params::{
    join_and, join_or, octal_mode, DefaultText, Kind, ParamSpec, Scheme, Schemes, FLAG_WORDS,
    PARAMS, SIZE_SUFFIXES,
};
use super::{MAX_PARAMS, MAX_URL_BYTES};

/// The marker lines around each copy (after the comment's `//!` or `///`, if any).
const BEGIN: &str =
    "<!-- BEGIN generated: url-params, from src/config/params.rs: edit the table there -->";
const END: &str = "<!-- END generated: url-params -->";

/// The marker lines in a manual page: roff comments.
const ROFF_BEGIN: &str =
    ".\\\" BEGIN generated: url-params, from src/config/params.rs: edit the table there";
const ROFF_END: &str = ".\\\" END generated: url-params";

/// How wide the prose lines get, before a comment's prefix.
const WIDTH: usize = 92;

/// The grammar, the parameter table and the notes on values and limits, as markdown (for
/// README.md and the module doc).
fn markdown() -> Vec<String> {
    let mut out = vec![String::new(), "```text".to_string()];
    for (i, s) in Scheme::ALL.into_iter().enumerate() {
        let path = s.path().map(|p| format!(" {p}")).unwrap_or_default();
        let lead = if i == 0 { "URL   =" } else { "      |" };
        out.push(format!("{lead} \"{}:\"{path} [ \"?\" QUERY ]", s.name()));
    }
    out.push(
        "QUERY = PARAM *( \"&\" PARAM )          empty PARAMs (\"a=1&&b=2\", a trailing '&') \
         are skipped"
            .to_string(),
    );
    out.push("PARAM = KEY \"=\" VALUE".to_string());
    out.push("```".to_string());
    out.push(String::new());
    out.push("Parameters (each optional and at most once; any other KEY is an error):".to_string());
    out.push(String::new());
    out.push("| KEY | VALUE | default | schemes | meaning |".to_string());
    out.push("| --- | --- | --- | --- | --- |".to_string());
    for p in PARAMS {
        let schemes = schemes_markdown(p.schemes);
        out.push(format!(
            "| `{}` | {} | {} | {} | {} |",
            p.name,
            value_markdown(p.kind),
            default_markdown(p.default),
            schemes,
            p.about
        ));
    }
    out.push(String::new());
    for note in notes() {
        out.extend(wrap(&note, "- ", "  "));
    }
    out.push(String::new());
    out
}

/// The grammar and the parameters grouped by the schemes that take them, as plain text (for
/// the `sesscache_open` doc comment, which the C header carries).
fn plain() -> Vec<String> {
    let mut out = vec![String::new()];
    let forms = join_or(Scheme::ALL.map(|s| format!("`{}`", s.form())));
    out.extend(wrap(
        &format!(
            "URL = SCHEME [ \"?\" KEY \"=\" VALUE *( \"&\" KEY \"=\" VALUE ) ], where SCHEME is \
             {forms}; every parameter is optional and may be given once."
        ),
        "",
        "",
    ));
    // Groups in the order of the table: each set of schemes where a parameter first has it.
    let mut groups: Vec<Schemes> = Vec::new();
    for p in PARAMS {
        if !groups.contains(&p.schemes) {
            groups.push(p.schemes);
        }
    }
    for group in groups {
        out.push(String::new());
        out.push(format!(
            "Parameters of {}:",
            group_names(group, |s| format!("`{s}:`"), "`redis`")
        ));
        for p in PARAMS.iter().filter(|p| p.schemes == group) {
            out.extend(wrap(&plain_item(p), "- ", "  "));
        }
    }
    out.push(String::new());
    out.extend(wrap(&plain_notes().join(" "), "", ""));
    out.push(String::new());
    out
}

/// The schemes of a group of parameters, for a heading: "every scheme", or the schemes
/// each as `name` writes it, with the `redis` schemes together as "every {redis} scheme"
/// when the group has them all.
fn group_names(group: Schemes, name: impl Fn(&str) -> String, redis: &str) -> String {
    if group == Schemes::ALL {
        return "every scheme".to_string();
    }
    let all_redis = Schemes::REDIS.iter().all(|s| group.contains(s));
    let mut items: Vec<String> = group
        .iter()
        .filter(|s| !(all_redis && Schemes::REDIS.contains(*s)))
        .map(|s| name(s.name()))
        .collect();
    if all_redis {
        items.push(format!("every {redis} scheme"));
    }
    join_and(items)
}

/// The notes of the plain text: what NAME, NUMBER, SIZE and flags are, the limits.
fn plain_notes() -> Vec<String> {
    let mut notes = Vec::new();
    for s in Scheme::ALL {
        if let (Some(path), Some(rule)) = (s.path(), s.path_rule()) {
            notes.push(format!("{path}: {rule}."));
        }
    }
    let suffixes = join_or(SIZE_SUFFIXES.iter().map(|&(c, _)| (c as char).to_string()));
    let also = |on: bool| {
        join_or(
            FLAG_WORDS[1..]
                .iter()
                .map(|&(off, yes)| if on { yes } else { off }.to_string()),
        )
    };
    notes.push(format!(
        "NUMBER: ASCII digits only, at least 1. SIZE: a NUMBER of bytes with an optional \
         {suffixes} suffix (powers of 1024). 0|1 also takes {} for 0, {} for 1. PATH, TEXT \
         and NAME are percent-decoded.",
        also(false),
        also(true)
    ));
    notes.push(format!(
        "A URL is at most {MAX_URL_BYTES} bytes with at most {MAX_PARAMS} parameters."
    ));
    notes
}

/// One parameter in the plain list: `size=SIZE` (from 64K to 64G; default ...): meaning.
fn plain_item(p: &ParamSpec) -> String {
    let range = p.kind.range().map(|r| format!("{r}; ")).unwrap_or_default();
    let default = match p.default {
        DefaultText::Value(v) => format!("default {v}"),
        DefaultText::Otherwise(text) => format!("default: {text}"),
    };
    format!(
        "`{}={}` ({range}{default}): {}",
        p.name,
        placeholder(p.kind),
        p.about
    )
}

/// The schemes column: "all", or the schemes, the `redis` ones last when all of them are.
fn schemes_markdown(schemes: Schemes) -> String {
    if schemes == Schemes::ALL {
        return "all".to_string();
    }
    let all_redis = Schemes::REDIS.iter().all(|s| schemes.contains(s));
    let name = |s: Scheme| format!("`{}:`", s.name());
    let mut names: Vec<String> = schemes
        .iter()
        .filter(|s| !(all_redis && Schemes::REDIS.contains(*s)))
        .map(name)
        .collect();
    if all_redis {
        names.extend(Schemes::REDIS.iter().map(name));
    }
    names.join(", ")
}

/// The VALUE column: `NUMBER`, `SIZE from 64K to 64G`, `` `0` or `1` ``, ...
fn value_markdown(kind: Kind) -> String {
    match kind {
        Kind::Number | Kind::Size { .. } | Kind::Count { .. } => match kind.range() {
            Some(range) => format!("{} {range}", placeholder(kind)),
            None => placeholder(kind),
        },
        Kind::Path | Kind::Prefix | Kind::EnvName => placeholder(kind),
        Kind::Flag | Kind::Word(_) | Kind::Mode(_) => {
            join_or(placeholder(kind).split('|').map(|w| format!("`{w}`")))
        }
    }
}

/// The value's placeholder in `KEY=VALUE`: `NUMBER`, `SIZE`, `0|1`, `auto|keep|stateful`.
fn placeholder(kind: Kind) -> String {
    match kind {
        Kind::Number | Kind::Count { .. } => "NUMBER".to_string(),
        Kind::Size { .. } => "SIZE".to_string(),
        Kind::Path => "PATH".to_string(),
        Kind::Prefix => "TEXT".to_string(),
        Kind::EnvName => "NAME".to_string(),
        Kind::Flag => "0|1".to_string(),
        Kind::Word(words) => words.join("|"),
        Kind::Mode(modes) => modes
            .iter()
            .map(|&m| octal_mode(m))
            .collect::<Vec<_>>()
            .join("|"),
    }
}

fn default_markdown(default: DefaultText) -> String {
    match default {
        DefaultText::Value(v) => format!("`{v}`"),
        DefaultText::Otherwise(text) => text.to_string(),
    }
}

/// The notes of the markdown: what NAME, NUMBER, SIZE and flags are, limits, errors.
fn notes() -> Vec<String> {
    let code = |s: &str| format!("`{s}`");
    let mut notes = Vec::new();
    for s in Scheme::ALL {
        if let (Some(path), Some(rule)) = (s.path(), s.path_rule()) {
            notes.push(format!(
                "{path} (of a {} URL): {rule}.",
                code(&format!("{}:", s.name()))
            ));
        }
    }
    notes.push(
        "NUMBER: ASCII digits only (no sign, spaces, underscores or other characters), at \
         least 1."
            .to_string(),
    );
    let suffixes = join_or(
        SIZE_SUFFIXES
            .iter()
            .map(|&(c, _)| code(&(c as char).to_string())),
    );
    let examples = ["4096", "64K", "16M", "1G"].map(code).join(", ");
    notes.push(format!(
        "SIZE: a NUMBER of bytes, optionally followed by {suffixes} (either case; powers of \
         1024), e.g. {examples}."
    ));
    notes.push(format!(
        "PATH: {}; TEXT: {}; NAME: {}. Each is percent-decoded (`%26` for '&', `%25` for \
         '%').",
        Kind::Path.expected(),
        Kind::Prefix.expected(),
        Kind::EnvName.expected()
    ));
    let words = |on: bool| {
        join_or(
            FLAG_WORDS
                .iter()
                .map(|&(off, yes)| code(if on { yes } else { off })),
        )
    };
    notes.push(format!(
        "{} or {} (a flag): off is {}; on is {}.",
        code("0"),
        code("1"),
        words(false),
        words(true)
    ));
    notes.push(format!(
        "Limits: a URL is at most {MAX_URL_BYTES} bytes with at most {MAX_PARAMS} parameters \
         (counting repeats and unknown ones); longer URLs are refused before anything else is \
         looked at. Parsing is one pass over the URL."
    ));
    let example = "memory:?capacity=banana";
    let message = match super::parse(example) {
        Err(e) => e.0,
        Ok(_) => unreachable!("'{example}' is a bad URL"),
    };
    notes.push(format!(
        "Every error names the bad part: {} gives {}.",
        code(example),
        code(&message)
    ));
    notes
}

/// The grammar, the parameters grouped by the schemes that take them and the notes, as
/// man(7) roff (for `man/man5/sesscache-url.5`): `.SS` subsections of the page's section,
/// each parameter a `.TP` item, the notes `.IP` bullets.
fn roff() -> Vec<String> {
    let mut out = vec![
        ".SS Grammar".to_string(),
        ".RS".to_string(),
        ".nf".to_string(),
    ];
    for (i, s) in Scheme::ALL.into_iter().enumerate() {
        let path = s.path().map(|p| format!(" {p}")).unwrap_or_default();
        let lead = if i == 0 { "URL   =" } else { "      |" };
        out.push(roff_escape(&format!(
            "{lead} \"{}:\"{path} [ \"?\" QUERY ]",
            s.name()
        )));
    }
    out.push("QUERY = PARAM *( \"&\" PARAM )".to_string());
    out.push("PARAM = KEY \"=\" VALUE".to_string());
    out.push(".fi".to_string());
    out.push(".RE".to_string());
    out.push(".PP".to_string());
    out.extend(roff_wrap(
        "Every parameter is optional and may be given at most once; any other KEY is an \
         error. Empty PARAMs (`a=1&&b=2`, a trailing `&`) are skipped.",
    ));
    let mut groups: Vec<Schemes> = Vec::new();
    for p in PARAMS {
        if !groups.contains(&p.schemes) {
            groups.push(p.schemes);
        }
    }
    for group in groups {
        out.push(format!(
            ".SS \"Parameters of {}\"",
            group_names(group, |s| format!("{s}:"), "redis")
        ));
        for p in PARAMS.iter().filter(|p| p.schemes == group) {
            out.push(".TP".to_string());
            out.push(format!(
                "\\fB{}=\\fI{}\\fR",
                p.name,
                roff_escape(&placeholder(p.kind))
            ));
            let range = p
                .kind
                .range()
                .map(|r| format!(" Value: {r}."))
                .unwrap_or_default();
            let default = match p.default {
                DefaultText::Value(v) => format!("Default: `{v}`."),
                DefaultText::Otherwise(text) => format!("Default: {text}."),
            };
            let about = capitalize(p.about);
            out.extend(roff_wrap(&format!("{about}.{range} {default}")));
        }
    }
    out.push(".SS \"Values and limits\"".to_string());
    for note in notes() {
        out.push(".IP \\(bu 2".to_string());
        out.extend(roff_wrap(&note));
    }
    out
}

/// `text` with its first letter upper-case.
fn capitalize(text: &str) -> String {
    let mut chars = text.chars();
    match chars.next() {
        Some(c) => c.to_uppercase().chain(chars).collect(),
        None => String::new(),
    }
}

/// `text` safe in a roff text line: backslashes escaped, markdown's `code` in bold (its
/// hyphens as minus signs, as a user types them).
fn roff_escape(text: &str) -> String {
    let escaped = text.replace('\\', "\\e");
    let mut out = String::new();
    for (i, part) in escaped.split('`').enumerate() {
        if i % 2 == 1 {
            out.push_str(&format!("\\fB{}\\fR", part.replace('-', "\\-")));
        } else {
            out.push_str(part);
        }
    }
    out
}

/// `text` escaped and broken into roff text lines; a line that would start with a control
/// character ('.' or '\'') gets a `\&` in front.
fn roff_wrap(text: &str) -> Vec<String> {
    wrap(&roff_escape(text), "", "")
        .into_iter()
        .map(|l| {
            if l.starts_with('.') || l.starts_with('\'') {
                format!("\\&{l}")
            } else {
                l
            }
        })
        .collect()
}

/// `text` broken at spaces into lines of at most [`WIDTH`] (a longer word stays whole), the
/// first starting with `first`, the others with `rest`.
fn wrap(text: &str, first: &str, rest: &str) -> Vec<String> {
    let mut lines = Vec::new();
    let mut line = first.to_string();
    let mut empty = true;
    for word in text.split(' ').filter(|w| !w.is_empty()) {
        if !empty && line.len() + 1 + word.len() > WIDTH {
            lines.push(std::mem::replace(&mut line, rest.to_string()));
            empty = true;
        }
        if !empty {
            line.push(' ');
        }
        line.push_str(word);
        empty = false;
    }
    lines.push(line);
    lines
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    /// A copy of the generated text: the file, the prefix of its lines (none in markdown,
    /// `//!` or `///` in a doc comment) and what renders it.
    struct Place {
        file: &'static str,
        prefix: &'static str,
        render: fn() -> Vec<String>,
        /// The marker lines are roff comments ([`ROFF_BEGIN`], [`ROFF_END`]).
        roff: bool,
    }

    const PLACES: [Place; 4] = [
        Place {
            file: "README.md",
            prefix: "",
            render: markdown,
            roff: false,
        },
        Place {
            file: "src/config.rs",
            prefix: "//!",
            render: markdown,
            roff: false,
        },
        Place {
            file: "src/ffi/api.rs",
            prefix: "///",
            render: plain,
            roff: false,
        },
        Place {
            file: "man/man5/sesscache-url.5",
            prefix: "",
            render: roff,
            roff: true,
        },
    ];

    fn with_prefix(prefix: &str, line: &str) -> String {
        match (prefix, line) {
            ("", line) => line.to_string(),
            (prefix, "") => prefix.to_string(),
            (prefix, line) => format!("{prefix} {line}"),
        }
    }

    /// `text` with the lines between its marker lines replaced by what `place` renders.
    fn splice(text: &str, place: &Place) -> Result<String, String> {
        let (begin, end) = if place.roff {
            (ROFF_BEGIN, ROFF_END)
        } else {
            (BEGIN, END)
        };
        let (begin, end) = (
            with_prefix(place.prefix, begin),
            with_prefix(place.prefix, end),
        );
        let lines: Vec<&str> = text.split('\n').collect();
        let find = |marker: &str| {
            let at: Vec<usize> = (0..lines.len())
                .filter(|&i| lines[i].trim_end() == marker)
                .collect();
            match at[..] {
                [i] => Ok(i),
                _ => Err(format!(
                    "expected exactly one line '{marker}', found {}",
                    at.len()
                )),
            }
        };
        let (b, e) = (find(&begin)?, find(&end)?);
        if e < b {
            return Err(format!("'{end}' comes before '{begin}'"));
        }
        let mut out: Vec<String> = lines[..=b].iter().map(|l| l.to_string()).collect();
        out.extend(
            (place.render)()
                .iter()
                .map(|l| with_prefix(place.prefix, l)),
        );
        out.extend(lines[e..].iter().map(|l| l.to_string()));
        Ok(out.join("\n"))
    }

    /// Where two texts first differ, for the message.
    fn first_difference(found: &str, wanted: &str) -> String {
        let (f, w): (Vec<&str>, Vec<&str>) = (found.lines().collect(), wanted.lines().collect());
        let i = (0..f.len().max(w.len()))
            .find(|&i| f.get(i) != w.get(i))
            .unwrap_or(0);
        format!(
            "line {}: the file has\n      {:?}\n    the table renders\n      {:?}",
            i + 1,
            f.get(i).copied().unwrap_or("(end of file)"),
            w.get(i).copied().unwrap_or("(end of file)")
        )
    }

    #[test]
    fn generated_url_docs_are_current() {
        let root = Path::new(env!("CARGO_MANIFEST_DIR"));
        let bless = std::env::var("SESSCACHE_BLESS").is_ok_and(|v| v == "1");
        let mut stale = Vec::new();
        for place in &PLACES {
            let path = root.join(place.file);
            let text = std::fs::read_to_string(&path)
                .unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()));
            let wanted = splice(&text, place).unwrap_or_else(|e| panic!("{}: {e}", place.file));
            if wanted == text {
                continue;
            }
            if bless {
                std::fs::write(&path, &wanted)
                    .unwrap_or_else(|e| panic!("cannot write {}: {e}", path.display()));
                eprintln!(
                    "SESSCACHE_BLESS: rewrote the url-params text in {}",
                    place.file
                );
            } else {
                stale.push(format!(
                    "  {}, {}",
                    place.file,
                    first_difference(&text, &wanted)
                ));
            }
        }
        assert!(
            stale.is_empty(),
            "the cache URL documentation generated from the parameter table (PARAMS in \
             src/config/params.rs) is out of date in:\n{}\n\
             Do not edit the text between the 'BEGIN generated: url-params' and 'END generated: \
             url-params' lines by hand: change the table (or the renderers in \
             src/config/docs.rs), then run\n    \
             SESSCACHE_BLESS=1 cargo test --lib generated_url_docs_are_current\n\
             to rewrite every copy, then `make header` (the sesscache_open doc comment goes into \
             include/sesscache.h), and commit the lot.",
            stale.join("\n")
        );
    }

    #[test]
    fn rendered_docs_name_every_parameter_and_scheme() {
        let (md, text) = (markdown().join("\n"), plain().join("\n"));
        for p in PARAMS {
            assert!(md.contains(&format!("| `{}` |", p.name)), "{}", p.name);
            assert!(text.contains(&format!("`{}=", p.name)), "{}", p.name);
            assert!(md.contains(p.about), "{}", p.name);
        }
        for s in Scheme::ALL {
            assert!(md.contains(&format!("\"{}:\"", s.name())), "{}", s.name());
            assert!(text.contains(&format!("`{}`", s.form())), "{}", s.name());
        }
        // Every parameter is in exactly one group of the plain list.
        for p in PARAMS {
            assert_eq!(
                text.matches(&format!("`{}=", p.name)).count(),
                1,
                "{}",
                p.name
            );
        }
        // Table rows have no stray cell separators.
        for row in md.lines().filter(|l| l.starts_with("| `")) {
            assert_eq!(row.matches(" | ").count(), 4, "{row}");
        }
        // No line of a doc comment or of the header gets too long.
        for line in md.lines().chain(text.lines()) {
            assert!(line.len() <= WIDTH || line.starts_with('|'), "{line}");
        }
        assert!(!text.contains("*/"), "the plain text goes into a C comment");
    }

    /// The URLs of the EXAMPLES section of the manual page parse.
    #[test]
    fn man_page_example_urls_parse() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("man/man5/sesscache-url.5");
        let text = std::fs::read_to_string(&path).expect("man/man5/sesscache-url.5");
        let examples: Vec<&str> = text
            .lines()
            .skip_while(|l| *l != ".SH EXAMPLES")
            .skip(1)
            .take_while(|l| !l.starts_with(".SH"))
            .filter(|l| !l.starts_with('.'))
            .collect();
        assert!(examples.len() >= 3, "{examples:?}");
        for url in examples {
            assert!(
                super::super::parse(url).is_ok(),
                "{url}: {:?}",
                super::super::parse(url)
            );
        }
    }

    #[test]
    fn roff_names_every_parameter_and_has_only_known_requests() {
        let lines = roff();
        let text = lines.join("\n");
        for p in PARAMS {
            assert_eq!(
                text.matches(&format!("\\fB{}=", p.name)).count(),
                1,
                "{}",
                p.name
            );
        }
        for s in Scheme::ALL {
            assert!(text.contains(&format!("\"{}:\"", s.name())), "{}", s.name());
        }
        const REQUESTS: [&str; 8] = [".SS ", ".TP", ".IP ", ".PP", ".RS", ".RE", ".nf", ".fi"];
        for line in &lines {
            if line.starts_with('.') || line.starts_with('\'') {
                assert!(REQUESTS.iter().any(|r| line.starts_with(r)), "{line}");
            }
            assert!(!line.contains('`'), "markdown left in {line}");
            assert!(line.len() <= WIDTH, "{line}");
        }
        assert_eq!(roff_wrap(".x 'y")[0], "\\&.x 'y");
        assert_eq!(roff_escape("a\\b `c-d`"), "a\\eb \\fBc\\-d\\fR");
    }

    #[test]
    fn wrap_breaks_at_spaces_and_indents() {
        let long = "word ".repeat(40);
        let lines = wrap(&long, "- ", "  ");
        assert!(lines.len() > 1);
        assert!(lines[0].starts_with("- word"));
        assert!(lines[1..].iter().all(|l| l.starts_with("  word")));
        assert!(lines.iter().all(|l| l.len() <= WIDTH));
        assert_eq!(lines.join(" ").split_whitespace().count(), 41);
        assert_eq!(wrap("a b", "", ""), ["a b"]);
    }
}
