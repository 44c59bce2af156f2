//! The exercise markers a chapter's source carries, and cutting them out.
//!
//! A chapter marks each part a learner should write:
//!
//! ```text
//! // exercise-hole: scan | Loop from position 0: decode the rest of the buffer ...
//! // exercise-hint: Tier 2: a longer hint, shown by `cargo xtask hint 01 scan`.
//! // exercise-hint: Tier 3: the next one, shown by the next `cargo xtask hint 01 scan`.
//! ...the solution...
//! // exercise-rule: sync | the cut is made durable
//! ...a part of the solution that some test must catch on its own...
//! // exercise-rule-end
//! // exercise-end
//! ```
//!
//! The exercise generator replaces the region with
//! `todo!("exercise `scan`: <hint>")`. A region must be the whole rest of a
//! block (typically a function body after its argument checks), because
//! `todo!()` stands in for its value. A *rule* names one behaviour of the
//! solution that the hints ask for: `cargo xtask exercises --check` takes
//! each rule's lines away alone and requires a test to fail, so no hint asks
//! for something no test checks. A rule's lines must be whole statements,
//! since that check runs them in a block of their own. Every marker line is
//! dropped from the book and from the skeletons.
//!
//! That check cuts every hole and every rule alone, the rest solved. It
//! builds the chapter once for all of them, with each cut behind a switch
//! read when the program runs ([`Cut::Switch`]): a hole that is switched on
//! reaches its `todo!()` before its solution, as the skeleton would, and a
//! rule switched on skips its lines. One build instead of one a cut: the
//! builds were most of the check's time.

use std::fmt::Write as _;

/// Opens a hole: `// exercise-hole: <id> | <the todo!'s one-line hint>`.
pub const HOLE: &str = "// exercise-hole:";
/// One more tier of hint, inside a hole.
pub const HINT: &str = "// exercise-hint:";
/// Opens a rule, inside a hole: `// exercise-rule: <name> | <what it does>`.
pub const RULE: &str = "// exercise-rule:";
/// Closes a rule.
pub const RULE_END: &str = "// exercise-rule-end";
/// Closes a hole.
pub const END: &str = "// exercise-end";

/// Whether a line is one of the markers (which the book and the skeletons
/// never show).
pub fn is_marker(line: &str) -> bool {
    line.trim_start().starts_with("// exercise-")
}

/// One region cut out of a chapter.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Hole {
    /// The file, relative to the chapter's folder.
    pub file: String,
    /// The line of the `todo!()` in the skeleton (1-based).
    pub line: usize,
    /// The hole's name, unique in its chapter.
    pub id: String,
    /// The hints, tier 1 (the `todo!`'s message) first.
    pub hints: Vec<String>,
    /// The names of the rules inside the hole.
    pub rules: Vec<String>,
    /// How many lines of code (not blank, not comments) the hole cuts.
    pub code_lines: usize,
}

/// What [`cut`] cuts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cut {
    /// Every hole: the learner's skeleton.
    All,
    /// Nothing cut yet: every hole starts with a `todo!()` that runs when
    /// the environment variable [`SWITCH`] names the hole (`scan`) when the
    /// program runs, and every rule's lines are skipped when it names the
    /// rule (`append/flush_when_full`). Unset, everything is solved.
    Switch,
}

/// The environment variable that picks the one cut of a [`Cut::Switch`]
/// build.
pub const SWITCH: &str = "KFS_EXERCISE_CUT";

/// The name [`SWITCH`] takes to cut rule `rule` of hole `hole`.
pub fn rule_switch(hole: &str, rule: &str) -> String {
    format!("{hole}/{rule}")
}

/// An expression that is true when [`SWITCH`] is `name`; the variable is
/// read once, as the program runs, not on every call (holes sit on hot
/// paths, like a frame's decoding).
fn switched_on(name: &str) -> String {
    format!(
        "{{ static CUT: ::std::sync::OnceLock<bool> = ::std::sync::OnceLock::new(); \
         *CUT.get_or_init(|| ::std::env::var_os(\"{SWITCH}\").is_some_and(|cut| cut == \"{name}\")) }}"
    )
}

/// The message of the `todo!()` that stands in for hole `id`. The grader
/// finds it in a failing test's panic to say which hole blocks the test.
pub fn todo_message(id: &str, hint: &str) -> String {
    format!("exercise `{id}`: {hint}")
}

/// Applies `what` to `source` (the text of `file`): cut regions become a
/// `todo!()` carrying their first hint (or, for [`Cut::Switch`], keep their
/// solution behind a switch), every marker line and mdBook `ANCHOR` line
/// goes. Returns the result and every hole of the file (cut or
/// not). Errors name `file:line`.
pub fn cut(source: &str, file: &str, what: Cut) -> Result<(String, Vec<Hole>), String> {
    let mut out = String::with_capacity(source.len());
    let mut holes: Vec<Hole> = Vec::new();
    // The line the open hole started at, and whether it is being cut.
    let mut open: Option<(usize, bool)> = None;
    // The line the open rule started at.
    let mut rule: Option<usize> = None;
    // The line of the last `// exercise-end`, until the line after it is seen.
    let mut just_closed: Option<usize> = None;
    for (index, line) in source.lines().enumerate() {
        let number = index + 1;
        let trimmed = line.trim_start();
        if let Some(end) = just_closed
            && !trimmed.is_empty()
            && !is_anchor(trimmed)
        {
            // `todo!()` has type `!` only as a block's last expression; code
            // after it would not compile (or would never run).
            if !trimmed.starts_with('}') {
                return Err(format!(
                    "{file}:{end}: a hole must be the rest of its block, but line {number} follows it; \
                     move the region into a function of its own"
                ));
            }
            just_closed = None;
        }
        if let Some(rest) = trimmed.strip_prefix(HOLE) {
            if let Some((at, _)) = open {
                return Err(format!(
                    "{file}:{number}: a hole inside the hole opened at line {at}"
                ));
            }
            let (id, hint) = split_name(rest)
                .ok_or_else(|| format!("{file}:{number}: write `{HOLE} <id> | <hint>`"))?;
            if holes.iter().any(|h| h.id == id) {
                return Err(format!("{file}:{number}: a second hole named `{id}`"));
            }
            let cutting = what == Cut::All;
            let indent = &line[..line.len() - trimmed.len()];
            let todo = format!("todo!(\"{}\")", escape_format(&todo_message(&id, &hint)));
            match what {
                Cut::All => writeln!(out, "{indent}{todo}").unwrap(),
                Cut::Switch => {
                    writeln!(out, "{indent}if {} {{ {todo} }}", switched_on(&id)).unwrap();
                }
            }
            holes.push(Hole {
                file: file.to_string(),
                line: out.lines().count(),
                id,
                hints: vec![hint],
                rules: Vec::new(),
                code_lines: 0,
            });
            open = Some((number, cutting));
        } else if let Some(rest) = trimmed.strip_prefix(HINT) {
            let hole = holes
                .last_mut()
                .filter(|_| open.is_some() && rule.is_none());
            let (Some(hole), false) = (hole, rest.trim().is_empty()) else {
                return Err(format!(
                    "{file}:{number}: `{HINT} <text>` belongs inside a hole, outside its rules"
                ));
            };
            hole.hints.push(rest.trim().to_string());
        } else if let Some(rest) = trimmed.strip_prefix(RULE) {
            let (Some(hole), None) = (holes.last_mut().filter(|_| open.is_some()), rule) else {
                return Err(format!(
                    "{file}:{number}: `{RULE}` belongs inside a hole, and rules do not nest"
                ));
            };
            let (name, _) = split_name(rest)
                .ok_or_else(|| format!("{file}:{number}: write `{RULE} <name> | <what>`"))?;
            if hole.rules.contains(&name) {
                return Err(format!("{file}:{number}: a second rule named `{name}`"));
            }
            if what == Cut::Switch {
                let indent = &line[..line.len() - trimmed.len()];
                let on = switched_on(&rule_switch(&hole.id, &name));
                writeln!(out, "{indent}if !{on} {{").unwrap();
            }
            hole.rules.push(name);
            rule = Some(number);
        } else if trimmed.starts_with(RULE_END) {
            if rule.take().is_none() {
                return Err(format!("{file}:{number}: `{RULE_END}` without a rule"));
            }
            if what == Cut::Switch {
                let indent = &line[..line.len() - trimmed.len()];
                writeln!(out, "{indent}}}").unwrap();
            }
        } else if trimmed.starts_with(END) {
            if let Some(at) = rule {
                return Err(format!("{file}:{at}: the rule is never closed"));
            }
            if open.take().is_none() {
                return Err(format!("{file}:{number}: `{END}` without a hole"));
            }
            just_closed = Some(number);
        } else if is_marker(trimmed) {
            return Err(format!("{file}:{number}: an unknown exercise marker"));
        } else if !is_anchor(trimmed) {
            if let Some(hole) = holes.last_mut().filter(|_| open.is_some())
                && !trimmed.is_empty()
                && !trimmed.starts_with("//")
            {
                hole.code_lines += 1;
            }
            if !open.is_some_and(|(_, cutting)| cutting) {
                out.push_str(line);
                out.push('\n');
            }
        }
    }
    match open {
        Some((at, _)) => Err(format!(
            "{file}:{at}: the hole is never closed with `{END}`"
        )),
        None => Ok((out, holes)),
    }
}

/// Splits `name | text` into its two trimmed, non-empty halves.
fn split_name(rest: &str) -> Option<(String, String)> {
    let (name, text) = rest.split_once('|')?;
    let (name, text) = (name.trim(), text.trim());
    (!name.is_empty() && !text.is_empty()).then(|| (name.to_string(), text.to_string()))
}

/// mdBook's `// ANCHOR: name` and `// ANCHOR_END: name` lines.
fn is_anchor(trimmed: &str) -> bool {
    trimmed.starts_with("// ANCHOR:") || trimmed.starts_with("// ANCHOR_END:")
}

/// Escapes `text` for use as a string literal that is also a format string.
fn escape_format(text: &str) -> String {
    text.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('{', "{{")
        .replace('}', "}}")
}

/// The lines of code of a source file that a learner would have to write:
/// not blank, not comments, and not in a `#[cfg(test)]` module. The share
/// of these a chapter's holes cut is how much of the chapter its exercise
/// asks for.
pub fn core_lines(source: &str) -> usize {
    let mut count = 0;
    let mut lines = source.lines().peekable();
    while let Some(line) = lines.next() {
        let trimmed = line.trim();
        if trimmed == "#[cfg(test)]"
            && lines
                .peek()
                .is_some_and(|next| next.trim_start().starts_with("mod "))
        {
            // Skip to the module's closing brace, at the indentation it opened at.
            let indent = line.len() - line.trim_start().len();
            let close = format!("{}}}", " ".repeat(indent));
            for inner in lines.by_ref() {
                if inner == close {
                    break;
                }
            }
        } else if !trimmed.is_empty() && !trimmed.starts_with("//") && !is_marker(trimmed) {
            count += 1;
        }
    }
    count
}

#[cfg(test)]
mod tests {
    use super::*;

    const SOURCE: &str = "\
fn f() -> u32 {
    // ANCHOR: f
    let x = 1;
    // exercise-hole: add | Add {one} to \"x\".
    // exercise-hint: Use `+`.
    // exercise-hint: `x + 1`.
    let mut y = x;
    // exercise-rule: plus | adds
    y += 1;
    // exercise-rule-end
    y
    // exercise-end
    // ANCHOR_END: f
}
";

    #[test]
    fn a_hole_becomes_a_todo_with_its_first_hint_and_markers_go() {
        let (out, holes) = cut(SOURCE, "src/lib.rs", Cut::All).unwrap();
        assert_eq!(
            out,
            "\
fn f() -> u32 {
    let x = 1;
    todo!(\"exercise `add`: Add {{one}} to \\\"x\\\".\")
}
"
        );
        assert_eq!(
            holes,
            vec![Hole {
                file: "src/lib.rs".into(),
                line: 3,
                id: "add".into(),
                hints: vec![
                    "Add {one} to \"x\".".into(),
                    "Use `+`.".into(),
                    "`x + 1`.".into()
                ],
                rules: vec!["plus".into()],
                code_lines: 3,
            }]
        );
    }

    #[test]
    fn a_switch_build_keeps_every_solution_behind_its_switch() {
        let (out, holes) = cut(SOURCE, "f.rs", Cut::Switch).unwrap();
        let on = |name: &str| switched_on(name);
        assert_eq!(
            out,
            format!(
                "fn f() -> u32 {{\n    let x = 1;\n    \
                 if {} {{ todo!(\"exercise `add`: Add {{{{one}}}} to \\\"x\\\".\") }}\n    \
                 let mut y = x;\n    if !{} {{\n    y += 1;\n    }}\n    y\n}}\n",
                on("add"),
                on("add/plus")
            )
        );
        assert_eq!(holes[0].rules, ["plus"]);
        assert_eq!(rule_switch("add", "plus"), "add/plus");
    }

    #[test]
    fn bad_markers_are_errors_with_their_line() {
        let err = |source: &str| cut(source, "f.rs", Cut::All).unwrap_err();
        assert_eq!(
            err("// exercise-hole: a | hint\nbody\n"),
            "f.rs:1: the hole is never closed with `// exercise-end`"
        );
        assert!(err("x\n// exercise-end\n").starts_with("f.rs:2:"));
        assert!(
            err("// exercise-hole: a | h\n// exercise-hole: b | h\n// exercise-end\n")
                .contains("inside the hole")
        );
        assert_eq!(
            err("fn f() {\n// exercise-hole: a | h\nx();\n// exercise-end\n\ny();\n}\n"),
            "f.rs:4: a hole must be the rest of its block, but line 6 follows it; \
             move the region into a function of its own"
        );
        assert!(err("// exercise-hole: a\n// exercise-end\n").contains("<id> | <hint>"));
        assert!(
            err("fn a() {\n// exercise-hole: a | h\n// exercise-end\n}\n\
                 fn b() {\n// exercise-hole: a | h\n// exercise-end\n}\n")
            .contains("second hole")
        );
        assert!(err("// exercise-hint: stray\n").contains("inside a hole"));
        assert!(err("// exercise-rule: r | x\n").contains("inside a hole"));
        assert!(
            err("// exercise-hole: a | h\n// exercise-rule: r | x\n// exercise-end\n")
                .contains("never closed")
        );
        assert!(err("// exercise-hoel: a | h\n").contains("unknown exercise marker"));
    }

    #[test]
    fn core_lines_skip_comments_blanks_and_test_modules() {
        let source = "//! Docs.\n\n/// Item.\nfn f() {\n    g();\n}\n\n#[cfg(test)]\nmod tests {\n    fn t() {}\n}\nfn h() {}\n";
        assert_eq!(core_lines(source), 4);
    }
}
