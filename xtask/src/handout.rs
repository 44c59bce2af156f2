//! `cargo xtask handout NN DIR`: one chapter's exercise as a project of its
//! own, for an instructor to give out.
//!
//! `DIR` becomes a workspace holding the exercise (`DIR/NN-name/`), the
//! earlier chapters, solved, as path dependencies (`DIR/chapters/...`), the
//! root's `Cargo.lock` (the same dependency versions as the course), and a
//! `README.md` for the learner with every tier of hints folded. Living
//! outside the repository, it never conflicts with course updates; an
//! instructor grades it with `cargo xtask grade NN --exercises-dir DIR`.

use std::fmt::Write as _;
use std::fs;
use std::path::Path;

use toml_edit::{Array, value};

use crate::exercises::{
    Exercise, Files, chapter_files, exercise, materialize, source_files, workspace_manifest,
};
use crate::{chapters, find_chapter};
use xtask::markers::Cut;

/// Writes the handout for chapter `wanted` into `dir`, which must not exist
/// or be empty.
pub(crate) fn run(root: &Path, wanted: &str, dir: &Path) -> Result<(), String> {
    let chapter = find_chapter(root, wanted)?;
    if fs::read_dir(dir).is_ok_and(|mut entries| entries.next().is_some()) {
        return Err(format!(
            "{} is not empty; a handout goes into a new folder",
            dir.display()
        ));
    }
    let exercise = exercise(root, &chapter)?;
    let mut files = Files::new();
    for (path, bytes) in chapter_files(&chapter, Cut::All)? {
        files.insert(Path::new(&chapter.dir_name).join(path), bytes);
    }
    let earlier: Vec<_> = chapters(root)?
        .into_iter()
        .take_while(|c| c.dir_name != chapter.dir_name)
        .collect();
    for solved in &earlier {
        for relative in source_files(&solved.path)? {
            let path = solved.path.join(&relative);
            let bytes = fs::read(&path).map_err(|e| format!("{}: {e}", path.display()))?;
            files.insert(
                Path::new("chapters").join(&solved.dir_name).join(relative),
                bytes,
            );
        }
    }
    let keep: Vec<String> = earlier
        .iter()
        .map(|c| format!("chapters/{}", c.dir_name))
        .collect();
    let mut manifest = workspace_manifest(root, &[&chapter.dir_name], &|path| {
        keep.iter().any(|k| k == path).then(|| path.to_string())
    })?;
    // The solved chapters are members too (path dependencies inside the
    // workspace are), but `cargo test` at the top runs only the exercise.
    manifest["workspace"]["default-members"] =
        value([chapter.dir_name.as_str()].into_iter().collect::<Array>());
    files.insert(
        "Cargo.toml".into(),
        format!(
            "# The workspace of one exercise of Kafka from Scratch (`cargo xtask handout`).\n{manifest}"
        )
        .into_bytes(),
    );
    files.insert("README.md".into(), readme(&exercise).into_bytes());
    files.insert(".gitignore".into(), b"/target\n".to_vec());
    let lock = fs::read(root.join("Cargo.lock")).map_err(|e| format!("Cargo.lock: {e}"))?;
    files.insert("Cargo.lock".into(), lock);
    fs::create_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    materialize(dir, &files)?;
    println!(
        "wrote the exercise of chapter {} to {} ({} holes; `cargo test` there fails until they are written)",
        chapter.dir_name,
        dir.display(),
        exercise.holes.len()
    );
    Ok(())
}

/// The learner's `README.md`: what to do, the holes in order with their
/// hints folded tier by tier, and how the work is checked.
fn readme(exercise: &Exercise) -> String {
    let chapter = &exercise.chapter;
    let mut holes = String::new();
    for (i, hole) in exercise.holes.iter().enumerate() {
        writeln!(
            holes,
            "{}. **`{}`** in `{dir}/{}`: {}",
            i + 1,
            hole.id,
            hole.file,
            hole.hints[0],
            dir = chapter.dir_name
        )
        .unwrap();
        for (tier, hint) in hole.hints.iter().enumerate().skip(1) {
            writeln!(
                holes,
                "   <details><summary>Hint {}</summary>\n\n   {hint}\n\n   </details>",
                tier + 1
            )
            .unwrap();
        }
    }
    format!(
        "# Exercise {dir}\n\n\
         {description}\n\n\
         This is one exercise of *Kafka from Scratch*: the chapter's crate with its key parts \
         cut out. Read the chapter in the book first. Each cut is a `todo!()` whose message is \
         your first hint; the tests are the chapter's own, and they pass when you have rebuilt \
         it. `chapters/` holds the earlier chapters, solved: your crate depends on them.\n\n\
         ## What to write, in this order\n\n\
         {holes}\n\
         Open a hint only when stuck; each tier says a little more.\n\n\
         ## Check your work\n\n\
         ```sh\n\
         cargo test                      # from this folder: every test of the exercise\n\
         cargo test --test <file>        # one file of tests/\n\
         ```\n\n\
         A failing test's panic names the hole it waits on (`exercise `<hole>`: ...`). Change \
         the code under `{dir}/src/`, not the tests: grading runs the course's own copy of \
         them, and counts a deleted or ignored test as failed.\n",
        dir = chapter.dir_name,
        description = exercise.description,
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::runner::{self, Mode};
    use std::time::Duration;

    #[test]
    fn a_handout_builds_on_its_own_and_fails_until_solved() {
        let root = crate::repo_root();
        let temp = tempfile::tempdir().unwrap();
        let dir = temp.path().join("handout");
        run(&root, "01", &dir).unwrap();
        assert!(dir.join("01-commit-log/src/frame.rs").is_file());
        assert!(dir.join("README.md").is_file());
        assert!(run(&root, "01", &dir).unwrap_err().contains("not empty"));
        // Its unit tests are enough to see it build and fail.
        let results = runner::run(
            &root,
            &dir.join("Cargo.toml"),
            "ex01-commit-log",
            Mode::UntilFailure {
                first: None,
                switch: None,
            },
            Duration::from_secs(60),
        )
        .unwrap();
        assert!(
            results
                .values()
                .flat_map(|g| g.values())
                .any(|o| !runner::is_fine(o)),
            "the skeleton's tests pass: {results:?}"
        );
    }
}
