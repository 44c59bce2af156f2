//! Generating `exercises/` from the chapters, and checking it.
//!
//! The markers a chapter carries, and how a hole is cut, are in
//! [`xtask::markers`]. The generator copies each chapter crate into
//! `exercises/`, cuts every hole, and writes an `EXERCISE.md` listing the
//! holes in the order the chapter's book page shows them. The check compiles
//! every skeleton and requires its tests to fail, then cuts each hole (and
//! each rule) *alone*, the rest solved, and requires a test to fail: a hole
//! or rule no test notices is a hint that asks for something nobody checks.
//! It builds each chapter once for all its cuts, each behind a switch the
//! tests turn on as they run ([`Cut::Switch`]).

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::fs;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use toml_edit::{Array, DocumentMut, InlineTable, Item, Table, Value, value};
use xtask::book::{Paths, holes_shown};
use xtask::markers::{self, Cut, END, HINT, HOLE, Hole, RULE, RULE_END};

use crate::cargo::{cargo, parse_test_output, run_captured};
use crate::runner::{self, Mode, Outcome};
use crate::{Chapter, chapters};

/// Everything the generator writes, relative to its output folder.
pub(crate) type Files = BTreeMap<PathBuf, Vec<u8>>;

/// One chapter's exercise.
#[derive(Debug, Clone)]
pub(crate) struct Exercise {
    pub(crate) chapter: Chapter,
    /// The package's description, from its `Cargo.toml`.
    pub(crate) description: String,
    /// The holes, in the order the book shows them (then any the book does
    /// not show, in file order).
    pub(crate) holes: Vec<Hole>,
    /// The lines of code in the chapter's `src/` (see [`markers::core_lines`]).
    core_lines: usize,
}

impl Exercise {
    /// The lines of code the holes cut.
    fn hole_lines(&self) -> usize {
        self.holes.iter().map(|h| h.code_lines).sum()
    }

    /// What share of the chapter's code the holes cut, in percent.
    fn share(&self) -> usize {
        self.hole_lines() * 100 / self.core_lines.max(1)
    }

    /// One line: holes, lines cut, share.
    fn summary(&self) -> String {
        format!(
            "{} holes cut {} of {} lines of code in src/ ({}%)",
            self.holes.len(),
            self.hole_lines(),
            self.core_lines,
            self.share()
        )
    }
}

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
    let (files, catalogue) = generate(root)?;
    materialize(&dir, &files)?;
    for exercise in &catalogue {
        println!(
            "exercise {}: {}",
            exercise.chapter.dir_name,
            exercise.summary()
        );
    }
    println!("wrote {} files under exercises/", files.len());
    Ok(())
}

/// Makes the files under `dir` exactly `files` (a lock file, build output
/// and a learner's proptest records aside), rewriting only what changed so
/// cargo does not rebuild what did not.
pub(crate) fn materialize(dir: &Path, files: &Files) -> Result<(), String> {
    for stale in on_disk(dir)?.difference(&files.keys().cloned().collect()) {
        fs::remove_file(dir.join(stale)).map_err(|e| format!("{}: {e}", stale.display()))?;
    }
    for (path, contents) in files {
        let path = dir.join(path);
        fs::create_dir_all(path.parent().unwrap()).map_err(|e| e.to_string())?;
        if fs::read(&path).ok().as_deref() != Some(contents.as_slice()) {
            fs::write(&path, contents).map_err(|e| format!("{}: {e}", path.display()))?;
        }
    }
    remove_empty_dirs(dir);
    Ok(())
}

/// Fails when `exercises/` differs from what [`write`] would make, when a
/// skeleton does not compile or its tests all pass, or when cutting one hole
/// or rule alone makes no test fail. With `only`, the last three concern
/// that chapter alone.
pub(crate) fn check(root: &Path, timeout: Duration, only: Option<&str>) -> Result<(), String> {
    let dir = root.join("exercises");
    let (files, mut catalogue) = generate(root)?;
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

    let packages: Vec<String> = match only {
        Some(wanted) => {
            let chapter = crate::find_chapter(root, wanted)?;
            catalogue.retain(|e| e.chapter.dir_name == chapter.dir_name);
            vec!["--package".into(), chapter.exercise_package()]
        }
        None => vec!["--workspace".into()],
    };
    seed_lockfile(root, &dir, true)?;
    let manifest = dir.join("Cargo.toml");
    let mut build = vec!["test", "--no-run"];
    build.extend(packages.iter().map(String::as_str));
    let (ok, output) = run_captured(cargo(root, &manifest, &build))?;
    if !ok {
        return Err(format!("the exercise skeletons do not compile:\n{output}"));
    }
    for exercise in &catalogue {
        let chapter = &exercise.chapter;
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
            "exercise {}: up to date, compiles, {failed} of {} tests fail until solved; {}",
            chapter.dir_name,
            passed + failed,
            exercise.summary()
        );
    }
    check_each_hole(root, &catalogue, timeout)
}

/// Cuts each hole alone, then each rule alone, the rest of the chapter
/// solved, and requires some test to fail each time.
fn check_each_hole(root: &Path, catalogue: &[Exercise], timeout: Duration) -> Result<(), String> {
    let started = Instant::now();
    let scratch = root.join("target/xtask/check-holes");
    let mut unnoticed = Vec::new();
    for exercise in catalogue {
        let chapter = &exercise.chapter;
        // (what is cut, the value of the switch that cuts it, its file)
        let mut cuts: Vec<(String, String, &str)> = Vec::new();
        for hole in &exercise.holes {
            let file = hole.file.as_str();
            cuts.push((format!("hole `{}`", hole.id), hole.id.clone(), file));
            for rule in &hole.rules {
                let what = format!("rule `{rule}` of hole `{}`", hole.id);
                cuts.push((what, markers::rule_switch(&hole.id, rule), file));
            }
        }
        // One build for every cut: each is switched on as the tests run.
        let files = chapter_files(chapter, Cut::Switch)?;
        let manifest = scratch_workspace(root, &scratch, chapter, files)?;
        let package = chapter.exercise_package();
        for (what, switch, file) in cuts {
            let one = Instant::now();
            let mode = Mode::UntilFailure {
                first: Some(file),
                switch: Some(&switch),
            };
            let results = runner::run(root, &manifest, &package, mode, timeout)
                .map_err(|e| format!("{} with its {what} cut: {e}", chapter.dir_name))?;
            let failing: Vec<String> = results
                .values()
                .flat_map(|tests| tests.iter())
                .filter(|(_, outcome)| !runner::is_fine(outcome))
                .map(|(name, outcome)| match outcome {
                    Outcome::TimedOut(_) => format!("{name} (timed out)"),
                    _ => name.clone(),
                })
                .collect();
            println!(
                "  {} {what}: {} ({:.0?})",
                chapter.dir_name,
                match failing.first() {
                    Some(first) => format!("caught by {first}"),
                    None => "NO TEST FAILS".into(),
                },
                one.elapsed()
            );
            if failing.is_empty() {
                unnoticed.push(format!("{}: {what}", chapter.dir_name));
            }
        }
    }
    println!(
        "cutting each hole and rule alone took {:.0?}",
        started.elapsed()
    );
    if unnoticed.is_empty() {
        Ok(())
    } else {
        Err(format!(
            "no test fails when these are cut alone, so their hints ask for something no test \
             checks; add a test, or narrow the hole:\n  {}",
            unnoticed.join("\n  ")
        ))
    }
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

/// Writes a workspace under `dir` (in `target/`) holding one chapter crate
/// made of `files`, depending on the solved chapters by absolute path, and
/// returns its manifest. Used to grade a learner's copy and to cut one hole.
///
/// The crate sits in a folder named after `dir` (`grade/05-consumer-groups`
/// in `target/xtask/grade/`). All these workspaces build into the root's
/// `target/`, and cargo names a path package's build by its path *relative
/// to its workspace*: were the crate at `05-consumer-groups` in each, as in
/// `exercises/`, they would share one build and one record of its sources,
/// and cargo would judge the grader's copy fresh by the mtimes of the
/// files another workspace built from (dep-info records files under
/// `target/` relative to it), and run test binaries built from other code.
pub(crate) fn scratch_workspace(
    root: &Path,
    dir: &Path,
    chapter: &Chapter,
    files: Files,
) -> Result<PathBuf, String> {
    let member = scratch_member(dir, chapter);
    let mut all: Files = files
        .into_iter()
        .map(|(path, bytes)| (member.join(path), bytes))
        .collect();
    let base = root.display().to_string();
    let member_name = member.to_string_lossy();
    let manifest = workspace_manifest(root, &[&member_name], &|path| {
        Some(format!("{base}/{path}"))
    })?;
    all.insert("Cargo.toml".into(), manifest.to_string().into_bytes());
    materialize(dir, &all)?;
    seed_lockfile(root, dir, true)?;
    Ok(dir.join("Cargo.toml"))
}

/// Where [`scratch_workspace`] puts the chapter crate, relative to `dir`.
fn scratch_member(dir: &Path, chapter: &Chapter) -> PathBuf {
    let kind = dir.file_name().unwrap_or_default();
    Path::new(kind).join(&chapter.dir_name)
}

/// Makes every file of `exercises/`, in memory, with the catalogue of
/// exercises.
pub(crate) fn generate(root: &Path) -> Result<(Files, Vec<Exercise>), String> {
    let mut files = Files::new();
    let mut catalogue = Vec::new();
    for chapter in chapters(root)? {
        let exercise = exercise(root, &chapter)?;
        for (path, bytes) in chapter_files(&chapter, Cut::All)? {
            files.insert(Path::new(&chapter.dir_name).join(path), bytes);
        }
        files.insert(
            Path::new(&chapter.dir_name).join("EXERCISE.md"),
            exercise_readme(&exercise).into_bytes(),
        );
        catalogue.push(exercise);
    }
    let names: Vec<&str> = catalogue
        .iter()
        .map(|e| e.chapter.dir_name.as_str())
        .collect();
    let manifest = workspace_manifest(root, &names, &|path| Some(format!("../{path}")))?;
    files.insert(
        "Cargo.toml".into(),
        format!(
            "# Generated by `cargo xtask exercises` from the root Cargo.toml: do not edit.\n\
             # The exercises are a workspace of their own, outside the root's `cargo test`.\n{manifest}"
        )
        .into_bytes(),
    );
    files.insert(
        "README.md".into(),
        instructors_readme(&catalogue).into_bytes(),
    );
    Ok((files, catalogue))
}

/// The exercise of one chapter: its holes in the book's order and the size
/// of its code. Fails on a malformed marker or a chapter without holes.
pub(crate) fn exercise(root: &Path, chapter: &Chapter) -> Result<Exercise, String> {
    let mut holes: Vec<Hole> = Vec::new();
    let mut core_lines = 0;
    for relative in source_files(&chapter.path)? {
        let name = relative.to_string_lossy().into_owned();
        if !name.ends_with(".rs") {
            continue;
        }
        let text = read_text(&chapter.path.join(&relative))?;
        let (_, found) = markers::cut(&text, &name, Cut::All)
            .map_err(|e| format!("chapters/{}/{e}", chapter.dir_name))?;
        for hole in found {
            if let Some(earlier) = holes.iter().find(|h| h.id == hole.id) {
                return Err(format!(
                    "chapters/{}: two holes named `{}`, in {} and {}",
                    chapter.dir_name, hole.id, earlier.file, hole.file
                ));
            }
            holes.push(hole);
        }
        if name.starts_with("src/") {
            core_lines += markers::core_lines(&text);
        }
    }
    if holes.is_empty() {
        return Err(format!(
            "chapter {} marks no `{HOLE}` regions, so it has no exercise",
            chapter.dir_name
        ));
    }
    let order = book_order(root, chapter);
    holes.sort_by_key(|h| {
        order
            .iter()
            .position(|id| *id == h.id)
            .unwrap_or(usize::MAX)
    });
    let manifest = read_text(&chapter.path.join("Cargo.toml"))?;
    let (_, description) = exercise_manifest(chapter, &manifest)?;
    Ok(Exercise {
        chapter: chapter.clone(),
        description,
        holes,
        core_lines,
    })
}

/// The holes the chapter's book page (`book/src/ch<NN-name>.md`) shows, in
/// its order; empty if it has no page.
fn book_order(root: &Path, chapter: &Chapter) -> Vec<String> {
    let src_dir = root.join("book/src");
    let page = src_dir.join(format!("ch{}.md", chapter.dir_name));
    let Ok(content) = fs::read_to_string(&page) else {
        return Vec::new();
    };
    let paths = Paths {
        page_dir: src_dir.clone(),
        src_dir,
        caption_root: root.to_path_buf(),
    };
    holes_shown(&content, &paths)
}

/// The chapter's files with `cut` applied to its Rust sources and its
/// manifest renamed to the exercise's, relative to the chapter's folder.
pub(crate) fn chapter_files(chapter: &Chapter, cut: Cut) -> Result<Files, String> {
    let mut files = Files::new();
    for relative in source_files(&chapter.path)? {
        let source = chapter.path.join(&relative);
        let name = relative.to_string_lossy().into_owned();
        let out = if name == "Cargo.toml" {
            let (manifest, _) = exercise_manifest(chapter, &read_text(&source)?)?;
            manifest.into_bytes()
        } else if name.ends_with(".rs") {
            let (text, _) = markers::cut(&read_text(&source)?, &name, cut)
                .map_err(|e| format!("chapters/{}/{e}", chapter.dir_name))?;
            text.into_bytes()
        } else {
            fs::read(&source).map_err(|e| format!("{}: {e}", source.display()))?
        };
        files.insert(relative, out);
    }
    Ok(files)
}

/// A file's text; an error names the file.
pub(crate) fn read_text(path: &Path) -> Result<String, String> {
    fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))
}

/// The chapter's files to copy, relative to its folder, sorted: everything
/// but build output and proptest's record of past failures.
pub(crate) fn source_files(dir: &Path) -> Result<Vec<PathBuf>, String> {
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
pub(crate) fn exercise_manifest(chapter: &Chapter, text: &str) -> Result<(String, String), String> {
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

/// A workspace manifest for exercises (`exercises/Cargo.toml`, a handout's,
/// a scratch copy's): the root's package settings, dependencies and lints,
/// with `members`. `chapter_path` maps each chapter dependency's path (as
/// the root names it, `chapters/01-commit-log`) to the path this workspace
/// uses, or drops the dependency with `None`. The lints are the root's, but
/// a skeleton's unused parameters, imports and helpers are no warning:
/// they are used once the learner writes the code. `unused_must_use` stays
/// on, so a dropped `Result` is still a warning.
pub(crate) fn workspace_manifest(
    root: &Path,
    members: &[&str],
    chapter_path: &dyn Fn(&str) -> Option<String>,
) -> Result<DocumentMut, String> {
    let path = root.join("Cargo.toml");
    let text = read_text(&path)?;
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
            let Some(path) = chapter_path(path) else {
                continue;
            };
            item["path"] = value(path);
        }
        dependencies.insert(name, item);
    }

    let mut lints = workspace["lints"].clone();
    for lint in SKELETON_ALLOWS {
        let mut allow = InlineTable::new();
        allow.insert("level", "allow".into());
        allow.insert("priority", Value::from(-1));
        lints["rust"][lint] = value(allow);
    }

    let mut out = DocumentMut::new();
    let mut ws = Table::new();
    ws.insert("resolver", value("3"));
    ws.insert("members", value(members.iter().copied().collect::<Array>()));
    ws.insert("package", workspace["package"].clone());
    ws.insert("dependencies", Item::Table(dependencies));
    ws.insert("lints", lints);
    out.insert("workspace", Item::Table(ws));
    Ok(out)
}

/// The lints a skeleton relaxes: what a `todo!()` in place of a body leaves
/// unused. Not the `unused` group, which holds `unused_must_use`.
const SKELETON_ALLOWS: [&str; 5] = [
    "unused_variables",
    "unused_imports",
    "unused_mut",
    "unused_assignments",
    "dead_code",
];

/// `EXERCISE.md` in an exercise's folder: what to write, in the book's
/// order, and how to check it.
fn exercise_readme(exercise: &Exercise) -> String {
    let chapter = &exercise.chapter;
    let holes = &exercise.holes;
    let mut out = format!(
        "# Exercise {dir}\n\n\
         *Generated by `cargo xtask exercises` from `chapters/{dir}`: do not edit by hand.*\n\n\
         {description}\n\n\
         Read the chapter in the book first. This crate is the chapter's crate with {n} \
         part{s} cut out; each is a `todo!()` whose message is your first hint. The tests are \
         the chapter's own: when they pass, you have rebuilt the chapter.\n\n\
         ## What to write, in the book's order\n\n",
        dir = chapter.dir_name,
        description = exercise.description,
        n = holes.len(),
        s = if holes.len() == 1 { "" } else { "s" },
    );
    for (i, hole) in holes.iter().enumerate() {
        let more = match hole.hints.len() - 1 {
            0 => String::new(),
            n => format!(
                " ({n} more hint{}: `cargo xtask hint {} {}`)",
                if n == 1 { "" } else { "s" },
                chapter.number(),
                hole.id
            ),
        };
        writeln!(
            out,
            "{}. **`{}`** in `{}`, line {}: {}{more}",
            i + 1,
            hole.id,
            hole.file,
            hole.line,
            hole.hints[0]
        )
        .unwrap();
    }
    write!(
        out,
        "\n## Check your work\n\n\
         ```sh\n\
         cd exercises/{dir}\n\
         cargo test                   # every test, with the panics of what is left to do\n\
         cargo xtask grade {number}         # from anywhere in the repository: a score, and the next hole\n\
         cargo xtask hint {number} <hole>   # the next hint for a hole, one tier at a time\n\
         ```\n\n\
         The grader runs the course's tests (the chapter's `tests/` and the solution's list of \
         unit tests) against your code, so deleting or ignoring a test does not pass it. It \
         names the hole each failing test waits on and which hole to write next.\n\n\
         Stuck? The solution is the chapter itself, in `chapters/{dir}/`, and the book shows \
         each solution folded under its listing.\n",
        dir = chapter.dir_name,
        number = chapter.number(),
    )
    .unwrap();
    out
}

/// `exercises/README.md`: the instructors' guide, with a table of exercises.
fn instructors_readme(catalogue: &[Exercise]) -> String {
    let mut table = String::new();
    for exercise in catalogue {
        let parts: Vec<String> = exercise
            .holes
            .iter()
            .map(|h| format!("`{}` ({}, {} hints)", h.id, h.file, h.hints.len()))
            .collect();
        writeln!(
            table,
            "| [{dir}]({dir}/EXERCISE.md) | {n} | {cut} of {core} ({share}%) | {parts} |",
            dir = exercise.chapter.dir_name,
            n = exercise.holes.len(),
            cut = exercise.hole_lines(),
            core = exercise.core_lines,
            share = exercise.share(),
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
         *Lines cut* counts the lines of code (not blank, not comments, not `#[cfg(test)]` \
         modules) the holes remove from the chapter's `src/`; the aim is at least 15% per \
         chapter, with one hole that is the chapter's headline idea. Holes are listed in the \
         order the chapter's book page shows them, which is the order to write them in.\n\n\
         | exercise | holes | lines cut | holes, in the book's order |\n\
         | --- | --- | --- | --- |\n\
         {table}\n\
         ## Handing one out\n\n\
         Either give learners the repository (they work in `exercises/NN-name/`, beside the \
         solved chapters), or hand out one chapter as a project of its own:\n\n\
         ```sh\n\
         cargo xtask handout 02 /tmp/segments-exercise   # a standalone workspace to give out\n\
         ```\n\n\
         A handout holds the exercise, the earlier chapters (solved) as path dependencies, a \
         `README.md` for the learner with every hint tier folded, and the root's `Cargo.lock`. \
         Learners who work in the repository itself should work on a branch of their own: \
         `cargo xtask exercises` refuses to overwrite uncommitted changes in `exercises/` \
         (`--force` does), and a course update that regenerates `exercises/` then merges like \
         any other change. A handout, outside the repository, never conflicts.\n\n\
         ## Hints, in tiers\n\n\
         The `todo!()` carries the first hint. `cargo xtask hint NN HOLE` shows the next tier \
         each time it is run (it remembers the last one shown in `target/xtask/hints`); \
         `--tier N` shows a given tier.\n\n\
         ## Grading\n\n\
         From anywhere in the repository:\n\n\
         ```sh\n\
         cargo xtask grade 01                               # this repository's exercises/\n\
         cargo xtask grade 01 --exercises-dir path/to/copy  # a learner's copy, or a handout\n\
         cargo xtask grade 01 --solution                    # the chapter itself: full marks\n\
         cargo xtask grade all                              # a progress table, every chapter\n\
         ```\n\n\
         The grader runs **the course's tests, not the learner's copy of them**. It copies the \
         learner's exercise into `target/xtask/grade/`, puts the chapter's own `tests/` and \
         `Cargo.toml` over it, and runs it there. The expected tests are the solution's: every \
         test the chapter runs (unit, integration and doc tests) must run and pass, so a test \
         the learner deleted, renamed or `#[ignore]`d counts as failed. Unit tests live inside \
         the learner's `src/` files, so the grader checks they all ran by name but cannot \
         tell if one was edited; integration tests are the course's own, byte for byte.\n\n\
         Each test binary runs under a watchdog: when no test has finished for `--timeout` \
         seconds (30 by default), the binary is stopped and its unfinished tests rerun one at \
         a time, so a learner's infinite loop is reported as that test timing out. A test \
         run alone shows what every thread printed, and so does a failure that names no hole, \
         run again alone: a `todo!()` hit in a task the test spawned (a server's) is then \
         traced to its hole, though the test itself only saw a closed connection or was \
         stopped. A failure still without a hole to blame is reported as *failed, not traced \
         to a hole*.\n\n\
         It prints passed/total for each group of tests, the failures no hole explains, and \
         then the holes in the book's order with how many tests wait on each (a failing test \
         waits on the hole whose `todo!()` it hit), and which to write next. It exits non-zero \
         until every test passes.\n\n\
         ## How exercises are made\n\n\
         Course authors mark the regions to cut in a chapter's source:\n\n\
         ```rust\n\
         {HOLE} scan | Loop from position 0: ...\n\
         {HINT} The second tier: ...\n\
         {HINT} The third tier: ...\n\
         // ...the solution...\n\
         {RULE} sync | the cut is made durable\n\
         // ...a part of the solution some test must catch on its own...\n\
         {RULE_END}\n\
         {END}\n\
         ```\n\n\
         A region is the whole rest of a block (it is replaced by `todo!()`, which \
         stands in for the block's value), and a rule's lines are whole statements. The book never shows the markers: its preprocessor \
         (`cargo xtask mdbook-preprocessor`) drops them and folds each listing that holds a \
         hole under *Show the solution*. `cargo xtask exercises` regenerates this folder; \
         `cargo xtask exercises --check`, run by CI, fails if it is out of date, if a skeleton \
         does not compile, if a skeleton's tests all pass, or if cutting any one hole or rule \
         alone (the rest solved) makes no test fail. It builds each chapter once for that, \
         with every hole and rule behind a switch its tests turn on, one cut at a time \
         (`KFS_EXERCISE_CUT=<hole>` or `<hole>/<rule>`).\n"
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_repository_generates_and_every_chapter_has_holes() {
        let (files, catalogue) = generate(&crate::repo_root()).unwrap();
        assert!(files.contains_key(Path::new("Cargo.toml")));
        assert!(files.contains_key(Path::new("01-commit-log/EXERCISE.md")));
        let frame =
            String::from_utf8(files[Path::new("01-commit-log/src/frame.rs")].clone()).unwrap();
        assert!(frame.contains("todo!(\"exercise `scan`"));
        assert!(!frame.contains("ANCHOR"));
        assert!(!frame.contains("// exercise-"));
        assert!(catalogue.iter().all(|e| !e.holes.is_empty()));
    }

    #[test]
    fn skeletons_keep_unused_must_use() {
        let manifest =
            workspace_manifest(&crate::repo_root(), &["x"], &|p| Some(p.to_string())).unwrap();
        let rust = manifest["workspace"]["lints"]["rust"].as_table().unwrap();
        assert!(rust.contains_key("unused_variables"));
        assert!(!rust.contains_key("unused"));
        assert!(!rust.contains_key("unused_must_use"));
    }
}
