//! The output of every chapter's examples, stored where the book includes
//! it, so the book shows what the code really prints.

use std::fs;
use std::path::Path;
use std::process::Command;

use crate::chapters;

/// Runs each chapter's examples; writes their output to
/// `book/src/demos/<chapter>-<example>.txt`, or with `check` compares.
pub(crate) fn run(root: &Path, check: bool) -> Result<(), String> {
    let out_dir = root.join("book/src/demos");
    if !check {
        fs::create_dir_all(&out_dir).map_err(|e| e.to_string())?;
    }
    let mut stale = Vec::new();
    for chapter in chapters(root)? {
        let Ok(entries) = fs::read_dir(chapter.path.join("examples")) else {
            continue;
        };
        let mut examples: Vec<String> = entries
            .flatten()
            .filter_map(|e| {
                let name = e.file_name().to_string_lossy().into_owned();
                name.strip_suffix(".rs").map(str::to_string)
            })
            .collect();
        examples.sort();
        for example in examples {
            let output = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()))
                .args(["run", "--quiet", "--package", &chapter.package()])
                .args(["--example", &example])
                .current_dir(root)
                .output()
                .map_err(|e| e.to_string())?;
            if !output.status.success() {
                return Err(format!(
                    "example {example} of {} failed:\n{}",
                    chapter.dir_name,
                    String::from_utf8_lossy(&output.stderr)
                ));
            }
            let file = out_dir.join(format!("{}-{example}.txt", chapter.dir_name));
            let shown = file
                .strip_prefix(root)
                .unwrap_or(&file)
                .display()
                .to_string();
            if check {
                if fs::read(&file).ok() != Some(output.stdout) {
                    stale.push(shown);
                }
            } else {
                fs::write(&file, &output.stdout).map_err(|e| e.to_string())?;
                println!("wrote {shown}");
            }
        }
    }
    if stale.is_empty() {
        Ok(())
    } else {
        Err(format!(
            "the book shows stale example output; run `cargo xtask demos`:\n  {}",
            stale.join("\n  ")
        ))
    }
}
