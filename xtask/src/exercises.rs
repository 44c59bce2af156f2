//! Generating `exercises/` from the chapters, and checking it.
//!
//! A chapter marks each part a learner should write:
//!
//! ```text
//! // exercise-hole: scan | Loop from position 0: decode the rest of the buffer ...
//! ...the solution...
//! // exercise-end
//! ```
//!
//! The generator copies the chapter crate into `exercises/` and replaces each
//! marked region with `todo!("exercise `scan`: <hint>")`. A region must be
//! the whole rest of a block (typically a function body after its argument
//! checks), because `todo!()` stands in for its value; the check compiles
//! every skeleton, so a region that breaks this is caught.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::fs;
use std::path::{Path, PathBuf};

use toml_edit::{DocumentMut, InlineTable, Item, Table, Value, value};

use crate::cargo::{cargo, parse_test_output, run_captured};
use crate::{Chapter, chapters};

const HOLE: &str = "// exercise-hole:";
const END: &str = "// exercise-end";

/// One region cut out of a chapter.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Hole {
    /// The file, relative to the chapter's folder.
    file: String,
    /// The line of the `todo!()` in the exercise (1-based).
    line: usize,
    id: String,
    hint: String,
}

/// Everything the generator writes, relative to `exercises/`.
type Files = BTreeMap<PathBuf, Vec<u8>>;

/// Writes `exercises/` afresh, removing files the generator no longer makes.
/// Refuses, unless `force`, when `exercises/` has uncommitted changes: they
/// may be a learner's work, which regenerating would destroy.
pub(crate) fn write(root: &Path, force: bool) -> Result<(), String> {
    let dir = root.join("exercises");
    if !force {
        let status = std::process::Command::new("git")
            .args(["status", "--porcelain", "--", "exercises"])
            .current_dir(root)
            .output()
            .map_err(|e| format!("git status: {e}"))?;
        let changes = String::from_utf8_lossy(&status.stdout);
        if !changes.trim().is_empty() {
            return Err(format!(
                "exercises/ has uncommitted changes (a learner's work?); commit or stash them, \
                 or pass --force to overwrite them:\n{changes}"
            ));
        }
    }
    let files = generate(root)?;
    for stale in on_disk(&dir)?.difference(&files.keys().cloned().collect()) {
        fs::remove_file(dir.join(stale)).map_err(|e| format!("{}: {e}", stale.display()))?;
    }
    for (path, contents) in &files {
        let path = dir.join(path);
        fs::create_dir_all(path.parent().unwrap()).map_err(|e| e.to_string())?;
        if fs::read(&path).ok().as_deref() != Some(contents.as_slice()) {
            fs::write(&path, contents).map_err(|e| format!("{}: {e}", path.display()))?;
        }
    }
    remove_empty_dirs(&dir);
    println!("wrote {} files under exercises/", files.len());
    Ok(())
}

/// Fails when `exercises/` differs from what [`write`] would make, when a
/// skeleton does not compile, or when a skeleton's tests all pass.
pub(crate) fn check(root: &Path) -> Result<(), String> {
    let dir = root.join("exercises");
    let files = generate(root)?;
    let mut problems = Vec::new();
    let present = on_disk(&dir)?;
    for (path, contents) in &files {
        if !present.contains(path) {
            problems.push(format!("missing: exercises/{}", path.display()));
        } else if fs::read(dir.join(path)).ok().as_deref() != Some(contents.as_slice()) {
            problems.push(format!("out of date: exercises/{}", path.display()));
        }
    }
    for path in present.iter().filter(|p| !files.contains_key(*p)) {
        problems.push(format!("not generated: exercises/{}", path.display()));
    }
    if !problems.is_empty() {
        return Err(format!(
            "exercises/ is not what the chapters generate; run `cargo xtask exercises`:\n  {}",
            problems.join("\n  ")
        ));
    }

    seed_lockfile(root, &dir, true)?;
    let manifest = dir.join("Cargo.toml");
    let (ok, output) = run_captured(cargo(root, &manifest, &["test", "--workspace", "--no-run"]))?;
    if !ok {
        return Err(format!("the exercise skeletons do not compile:\n{output}"));
    }
    for chapter in chapters(root)? {
        let package = chapter.exercise_package();
        let (_, output) = run_captured(cargo(
            root,
            &manifest,
            &["test", "--no-fail-fast", "--package", &package],
        ))?;
        let groups = parse_test_output(&output);
        let passed: u32 = groups.iter().map(|g| g.passed).sum();
        let failed: u32 = groups.iter().map(|g| g.failed).sum();
        if failed == 0 {
            return Err(format!(
                "exercise {}: all {passed} tests pass on the skeleton, so it teaches nothing; \
                 mark more of the chapter with `{HOLE}`",
                chapter.dir_name
            ));
        }
        println!(
            "exercise {}: up to date, compiles, {failed} of {} tests fail until solved",
            chapter.dir_name,
            passed + failed
        );
    }
    Ok(())
}

/// Copies the root's `Cargo.lock` into an exercises workspace, so that it
/// builds the same dependency versions (and reuses their compiled artifacts).
/// A learner's own lock file is kept unless `overwrite` is set.
pub(crate) fn seed_lockfile(root: &Path, dir: &Path, overwrite: bool) -> Result<(), String> {
    let lock = dir.join("Cargo.lock");
    if overwrite || !lock.exists() {
        fs::copy(root.join("Cargo.lock"), &lock).map_err(|e| format!("{}: {e}", lock.display()))?;
    }
    Ok(())
}

/// Makes every file of `exercises/`, in memory.
fn generate(root: &Path) -> Result<Files, String> {
    let mut files = Files::new();
    let mut catalogue = Vec::new();
    for chapter in chapters(root)? {
        let holes = generate_chapter(&chapter, &mut files)?;
        if holes.is_empty() {
            return Err(format!(
                "chapter {} marks no `{HOLE}` regions, so it has no exercise",
                chapter.dir_name
            ));
        }
        catalogue.push((chapter, holes));
    }
    let names: Vec<&str> = catalogue.iter().map(|(c, _)| c.dir_name.as_str()).collect();
    files.insert(
        "Cargo.toml".into(),
        workspace_manifest(root, &names)?.into_bytes(),
    );
    files.insert(
        "README.md".into(),
        instructors_readme(&catalogue).into_bytes(),
    );
    Ok(files)
}

/// Adds one chapter's exercise to `files` and returns its holes.
fn generate_chapter(chapter: &Chapter, files: &mut Files) -> Result<Vec<Hole>, String> {
    let mut holes = Vec::new();
    let mut description = String::new();
    for relative in source_files(&chapter.path)? {
        let source = chapter.path.join(&relative);
        let bytes = fs::read(&source).map_err(|e| format!("{}: {e}", source.display()))?;
        let name = relative.to_string_lossy().into_owned();
        let out = if name == "Cargo.toml" {
            let (manifest, about) = exercise_manifest(chapter, &String::from_utf8_lossy(&bytes))?;
            description = about;
            manifest.into_bytes()
        } else if name.ends_with(".rs") {
            let text = String::from_utf8(bytes).map_err(|_| format!("{name}: not UTF-8"))?;
            let (cut, found) = cut_holes(&text, &name)
                .map_err(|e| format!("chapters/{}/{e}", chapter.dir_name))?;
            for hole in &found {
                if let Some(earlier) = holes.iter().find(|h: &&Hole| h.id == hole.id) {
                    return Err(format!(
                        "chapters/{}: two holes named `{}`, in {} and {}",
                        chapter.dir_name, hole.id, earlier.file, hole.file
                    ));
                }
            }
            holes.extend(found);
            cut.into_bytes()
        } else {
            bytes
        };
        files.insert(Path::new(&chapter.dir_name).join(relative), out);
    }
    files.insert(
        Path::new(&chapter.dir_name).join("EXERCISE.md"),
        exercise_readme(chapter, &description, &holes).into_bytes(),
    );
    Ok(holes)
}

/// Replaces each marked region of `source` with a `todo!()` carrying its
/// hint, and drops the book's `ANCHOR` lines. Errors name `file:line`.
fn cut_holes(source: &str, file: &str) -> Result<(String, Vec<Hole>), String> {
    let mut out = String::with_capacity(source.len());
    let mut holes: Vec<Hole> = Vec::new();
    let mut open: Option<usize> = None;
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
            if let Some(at) = open {
                return Err(format!(
                    "{file}:{number}: a hole inside the hole opened at line {at}"
                ));
            }
            let (id, hint) = rest
                .split_once('|')
                .ok_or_else(|| format!("{file}:{number}: write `{HOLE} <id> | <hint>`"))?;
            let (id, hint) = (id.trim().to_string(), hint.trim().to_string());
            if id.is_empty() || hint.is_empty() {
                return Err(format!("{file}:{number}: a hole needs an id and a hint"));
            }
            if holes.iter().any(|h| h.id == id) {
                return Err(format!("{file}:{number}: a second hole named `{id}`"));
            }
            let indent = &line[..line.len() - trimmed.len()];
            let message = escape_format(&format!("exercise `{id}`: {hint}"));
            writeln!(out, "{indent}todo!(\"{message}\")").unwrap();
            holes.push(Hole {
                file: file.to_string(),
                line: out.lines().count(),
                id,
                hint,
            });
            open = Some(number);
        } else if trimmed.starts_with(END) {
            if open.take().is_none() {
                return Err(format!("{file}:{number}: `{END}` without a hole"));
            }
            just_closed = Some(number);
        } else if open.is_none() && !is_anchor(trimmed) {
            out.push_str(line);
            out.push('\n');
        }
    }
    match open {
        Some(at) => Err(format!(
            "{file}:{at}: the hole is never closed with `{END}`"
        )),
        None => Ok((out, holes)),
    }
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

/// The chapter's files to copy, relative to its folder, sorted: everything
/// but build output and proptest's record of past failures.
fn source_files(dir: &Path) -> Result<Vec<PathBuf>, String> {
    let mut found = Vec::new();
    let mut pending = vec![PathBuf::new()];
    while let Some(relative) = pending.pop() {
        let entries =
            fs::read_dir(dir.join(&relative)).map_err(|e| format!("{}: {e}", dir.display()))?;
        for entry in entries {
            let entry = entry.map_err(|e| e.to_string())?;
            let name = entry.file_name().to_string_lossy().into_owned();
            if name.starts_with('.') || name == "target" || is_proptest_record(&name) {
                continue;
            }
            let path = relative.join(&name);
            if entry.file_type().map_err(|e| e.to_string())?.is_dir() {
                pending.push(path);
            } else {
                found.push(path);
            }
        }
    }
    found.sort();
    Ok(found)
}

/// proptest's record of failing cases: `proptest-regressions/` folders in
/// older versions, `<test>.proptest-regressions` files beside the test now.
/// A chapter's are kept with the chapter; a learner's are the learner's.
fn is_proptest_record(name: &str) -> bool {
    name == "proptest-regressions" || name.ends_with(".proptest-regressions")
}

/// The files under `exercises/` that the generator owns: all but build
/// output, the lock file, and a learner's proptest failures.
fn on_disk(dir: &Path) -> Result<std::collections::BTreeSet<PathBuf>, String> {
    if !dir.exists() {
        return Ok(Default::default());
    }
    Ok(source_files(dir)?
        .into_iter()
        .filter(|p| p != Path::new("Cargo.lock"))
        .collect())
}

fn remove_empty_dirs(dir: &Path) {
    let Ok(entries) = fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        if entry.file_type().is_ok_and(|t| t.is_dir()) {
            remove_empty_dirs(&entry.path());
            // Fails, harmlessly, unless the folder is empty.
            let _ = fs::remove_dir(entry.path());
        }
    }
}

/// The exercise's `Cargo.toml`: the chapter's, renamed `exNN-...` so it can
/// sit in one workspace with the solved chapters it depends on, but keeping
/// the library's name so the same tests compile unchanged. Also returns the
/// package's description.
fn exercise_manifest(chapter: &Chapter, text: &str) -> Result<(String, String), String> {
    let mut doc: DocumentMut = text
        .parse()
        .map_err(|e| format!("chapters/{}/Cargo.toml: {e}", chapter.dir_name))?;
    let description = doc["package"]["description"]
        .as_str()
        .ok_or_else(|| {
            format!(
                "chapters/{}/Cargo.toml: no package.description",
                chapter.dir_name
            )
        })?
        .to_string();
    doc["package"]["name"] = value(chapter.exercise_package());
    if doc.get("lib").is_none() {
        doc.insert("lib", Item::Table(Table::new()));
    }
    doc["lib"]["name"] = value(chapter.lib_name());
    let manifest = format!(
        "# Generated by `cargo xtask exercises` from chapters/{}/Cargo.toml: edit that, not this.\n{doc}",
        chapter.dir_name
    );
    Ok((manifest, description))
}

/// `exercises/Cargo.toml`: a workspace of the exercises, with the root's
/// package settings, dependencies (chapter paths pointing back to the solved
/// chapters) and lints (relaxed so a skeleton's unused code is no warning).
fn workspace_manifest(root: &Path, members: &[&str]) -> Result<String, String> {
    let path = root.join("Cargo.toml");
    let text = fs::read_to_string(&path).map_err(|e| format!("{}: {e}", path.display()))?;
    let doc: DocumentMut = text.parse().map_err(|e| format!("Cargo.toml: {e}"))?;
    let workspace = &doc["workspace"];

    let mut dependencies = Table::new();
    for (name, item) in workspace["dependencies"]
        .as_table()
        .ok_or("Cargo.toml: no [workspace.dependencies]")?
        .iter()
    {
        let mut item = item.clone();
        if let Some(path) = item.get("path").and_then(Item::as_str) {
            item["path"] = value(format!("../{path}"));
        }
        dependencies.insert(name, item);
    }

    let mut lints = workspace["lints"].clone();
    let mut allow = InlineTable::new();
    allow.insert("level", "allow".into());
    allow.insert("priority", Value::from(-1));
    lints["rust"]["unused"] = value(allow);

    let mut out = DocumentMut::new();
    let mut ws = Table::new();
    ws.insert("resolver", value("3"));
    ws.insert(
        "members",
        value(members.iter().copied().collect::<toml_edit::Array>()),
    );
    ws.insert("package", workspace["package"].clone());
    ws.insert("dependencies", Item::Table(dependencies));
    ws.insert("lints", lints);
    out.insert("workspace", Item::Table(ws));
    Ok(format!(
        "# Generated by `cargo xtask exercises` from the root Cargo.toml: do not edit.\n\
         # The exercises are a workspace of their own, outside the root's `cargo test`.\n{out}"
    ))
}

/// `EXERCISE.md` in an exercise's folder: what to write, and how to check it.
fn exercise_readme(chapter: &Chapter, description: &str, holes: &[Hole]) -> String {
    let mut out = format!(
        "# Exercise {dir}\n\n\
         *Generated by `cargo xtask exercises` from `chapters/{dir}`: do not edit by hand.*\n\n\
         {description}\n\n\
         Read the chapter in the book first. This crate is the chapter's crate with {n} \
         part{s} cut out; each is a `todo!()` whose message is your hint. The tests are the \
         chapter's own: when they pass, you have rebuilt the chapter.\n\n\
         ## What to write\n\n",
        dir = chapter.dir_name,
        description = description,
        n = holes.len(),
        s = if holes.len() == 1 { "" } else { "s" },
    );
    for (i, hole) in holes.iter().enumerate() {
        writeln!(
            out,
            "{}. **`{}`** in `{}`, line {}: {}",
            i + 1,
            hole.id,
            hole.file,
            hole.line,
            hole.hint
        )
        .unwrap();
    }
    write!(
        out,
        "\n## Check your work\n\n\
         ```sh\n\
         cd exercises/{dir}\n\
         cargo test            # every test, with the panics of what is left to do\n\
         cargo xtask grade {number}   # from anywhere in the repository: a score per test group\n\
         ```\n\n\
         Stuck? The solution is the chapter itself, in `chapters/{dir}/`.\n",
        dir = chapter.dir_name,
        number = chapter.number(),
    )
    .unwrap();
    out
}

/// `exercises/README.md`: the instructors' guide, with a table of exercises.
fn instructors_readme(catalogue: &[(Chapter, Vec<Hole>)]) -> String {
    let mut table = String::new();
    for (chapter, holes) in catalogue {
        let parts: Vec<String> = holes
            .iter()
            .map(|h| format!("`{}` ({})", h.id, h.file))
            .collect();
        writeln!(
            table,
            "| [{dir}]({dir}/EXERCISE.md) | {n} | {parts} |",
            dir = chapter.dir_name,
            n = holes.len(),
            parts = parts.join(", ")
        )
        .unwrap();
    }
    format!(
        "# Exercises\n\n\
         *Generated by `cargo xtask exercises` from the chapters: do not edit by hand.*\n\n\
         Each exercise is a chapter's crate with its key parts cut out. Every cut is a \
         `todo!()` whose message is a hint, so the skeleton compiles and its tests (the \
         chapter's own tests, unchanged) fail until the learner fills the cuts in. An \
         exercise depends on the *solved* earlier chapters in `../chapters/`, so a learner \
         can start at any chapter.\n\n\
         ## The exercises\n\n\
         | exercise | parts to write | what |\n\
         | --- | --- | --- |\n\
         {table}\n\
         ## Handing one out\n\n\
         1. Give learners the repository (the exercises need the solved chapters beside \
         them). They read the chapter in the book (`mdbook serve book`).\n\
         2. In their exercise's folder, `EXERCISE.md` lists each part to write with its \
         file and hint; the same hint is the message of the `todo!()` in the code.\n\
         3. They run `cargo test` in that folder until it passes.\n\n\
         ## Grading\n\n\
         From anywhere in the repository:\n\n\
         ```sh\n\
         cargo xtask grade 01                               # this repository's exercises/\n\
         cargo xtask grade 01 --exercises-dir path/to/copy  # a learner's copy of exercises/\n\
         cargo xtask grade 01 --solution                    # the chapter itself: full marks\n\
         ```\n\n\
         It prints passed/total for each group of tests (the unit tests, each integration \
         test file, the doc tests) with the names of the failing tests, and exits non-zero \
         until every test passes.\n\n\
         ## How exercises are made\n\n\
         Course authors mark the regions to cut in a chapter's source:\n\n\
         ```rust\n\
         {HOLE} scan | Loop from position 0: ...\n\
         // ...the solution...\n\
         {END}\n\
         ```\n\n\
         A region is the whole rest of a block (it is replaced by `todo!()`, which \
         stands in for the block's value). `cargo xtask exercises` regenerates this folder; \
         `cargo xtask exercises --check`, run by CI, fails if it is out of date, if a \
         skeleton does not compile, or if a skeleton's tests all pass.\n"
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_hole_becomes_a_todo_with_its_hint_and_anchors_go() {
        let source = "\
fn f() -> u32 {
    // ANCHOR: f
    let x = 1;
    // exercise-hole: add | Add {one} to \"x\".
    x + 1
    // exercise-end
    // ANCHOR_END: f
}
";
        let (out, holes) = cut_holes(source, "src/lib.rs").unwrap();
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
                hint: "Add {one} to \"x\".".into()
            }]
        );
    }

    #[test]
    fn bad_markers_are_errors_with_their_line() {
        let unclosed = "// exercise-hole: a | hint\nbody\n";
        assert_eq!(
            cut_holes(unclosed, "f.rs").unwrap_err(),
            "f.rs:1: the hole is never closed with `// exercise-end`"
        );
        let stray_end = "x\n// exercise-end\n";
        assert!(
            cut_holes(stray_end, "f.rs")
                .unwrap_err()
                .starts_with("f.rs:2:")
        );
        let nested = "// exercise-hole: a | h\n// exercise-hole: b | h\n// exercise-end\n";
        assert!(
            cut_holes(nested, "f.rs")
                .unwrap_err()
                .contains("inside the hole")
        );
        let not_the_end = "fn f() {\n// exercise-hole: a | h\nx();\n// exercise-end\n\ny();\n}\n";
        assert_eq!(
            cut_holes(not_the_end, "f.rs").unwrap_err(),
            "f.rs:4: a hole must be the rest of its block, but line 6 follows it; \
             move the region into a function of its own"
        );
        let no_hint = "// exercise-hole: a\n// exercise-end\n";
        assert!(cut_holes(no_hint, "f.rs").is_err());
        let twice = "fn a() {\n// exercise-hole: a | h\n// exercise-end\n}\n\
                     fn b() {\n// exercise-hole: a | h\n// exercise-end\n}\n";
        assert!(
            cut_holes(twice, "f.rs")
                .unwrap_err()
                .contains("second hole")
        );
    }

    #[test]
    fn the_repository_generates_and_every_chapter_has_holes() {
        let files = generate(&crate::repo_root()).unwrap();
        assert!(files.contains_key(Path::new("Cargo.toml")));
        assert!(files.contains_key(Path::new("01-commit-log/EXERCISE.md")));
        let frame =
            String::from_utf8(files[Path::new("01-commit-log/src/frame.rs")].clone()).unwrap();
        assert!(frame.contains("todo!(\"exercise `scan`"));
        assert!(!frame.contains("ANCHOR"));
    }
}
