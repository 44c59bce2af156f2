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
//! solution that the hints ask for: `cargo xtask exercises --check` deletes
//! each rule's lines alone and requires a test to fail, so no hint asks for
//! something no test checks. Every marker line is dropped from the book and
//! from the skeletons.

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
pub enum Cut<'a> {
    /// Every hole: the learner's skeleton.
    All,
    /// Only this hole; the others keep their solution.
    Hole(&'a str),
    /// Only this rule's lines, of this hole; everything else is solved.
    Rule(&'a str, &'a str),
}

/// The message of the `todo!()` that stands in for hole `id`. The grader
/// finds it in a failing test's panic to say which hole blocks the test.
pub fn todo_message(id: &str, hint: &str) -> String {
    format!("exercise `{id}`: {hint}")
}

/// Applies `what` to `source` (the text of `file`): cut regions become a
/// `todo!()` carrying their first hint, every marker line and mdBook
/// `ANCHOR` line goes. Returns the result and every hole of the file (cut or
/// not). Errors name `file:line`.
pub fn cut(source: &str, file: &str, what: Cut<'_>) -> Result<(String, Vec<Hole>), String> {
    let mut out = String::with_capacity(source.len());
    let mut holes: Vec<Hole> = Vec::new();
    // The line the open hole started at, and whether it is being cut.
    let mut open: Option<(usize, bool)> = None;
    // The line the open rule started at, and whether it is being cut.
    let mut rule: Option<(usize, bool)> = None;
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
            let cutting = match what {
                Cut::All => true,
                Cut::Hole(wanted) => wanted == id,
                Cut::Rule(..) => false,
            };
            if cutting {
                let indent = &line[..line.len() - trimmed.len()];
                let message = escape_format(&todo_message(&id, &hint));
                writeln!(out, "{indent}todo!(\"{message}\")").unwrap();
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
            let cutting = what == Cut::Rule(&hole.id, &name);
            hole.rules.push(name);
            rule = Some((number, cutting));
        } else if trimmed.starts_with(RULE_END) {
            if rule.take().is_none() {
                return Err(format!("{file}:{number}: `{RULE_END}` without a rule"));
            }
        } else if trimmed.starts_with(END) {
            if let Some((at, _)) = rule {
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
            let cut_by_hole = open.is_some_and(|(_, cutting)| cutting);
            let cut_by_rule = rule.is_some_and(|(_, cutting)| cutting);
            if !cut_by_hole && !cut_by_rule {
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
    // exercise-rule: plus | adds
    let y = x + 1;
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
                code_lines: 2,
            }]
        );
    }

    #[test]
    fn a_hole_or_a_rule_can_be_cut_alone() {
        let (solved, _) = cut(SOURCE, "f.rs", Cut::Hole("other")).unwrap();
        assert_eq!(
            solved,
            "fn f() -> u32 {\n    let x = 1;\n    let y = x + 1;\n    y\n}\n"
        );
        let (rule_cut, _) = cut(SOURCE, "f.rs", Cut::Rule("add", "plus")).unwrap();
        assert_eq!(rule_cut, "fn f() -> u32 {\n    let x = 1;\n    y\n}\n");
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
