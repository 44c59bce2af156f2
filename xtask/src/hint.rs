//! `cargo xtask hint NN HOLE`: a hole's hints, one more tier each time.
//!
//! Tier 1 is the `todo!()`'s message; further tiers are the
//! `// exercise-hint:` lines below the hole's marker in the chapter. The
//! tier last shown for each hole is kept in `target/xtask/hints`, one
//! `<chapter> <hole> <tier>` line each, so the next call shows one more.

use std::collections::BTreeMap;
use std::fs;
use std::path::Path;

use crate::exercises::exercise;
use crate::find_chapter;

/// Prints every tier of the hole's hints up to the next one (or up to
/// `tier`), and remembers how far it went.
pub(crate) fn run(root: &Path, wanted: &str, id: &str, tier: Option<usize>) -> Result<(), String> {
    let chapter = find_chapter(root, wanted)?;
    let exercise = exercise(root, &chapter)?;
    let Some(hole) = exercise.holes.iter().find(|h| h.id == id) else {
        let ids: Vec<&str> = exercise.holes.iter().map(|h| h.id.as_str()).collect();
        return Err(format!(
            "chapter {} has no hole `{id}`; its holes are: {}",
            chapter.dir_name,
            ids.join(", ")
        ));
    };
    let tiers = hole.hints.len();
    let state_file = root.join("target/xtask/hints");
    let mut state = read_state(&state_file);
    let key = format!("{} {id}", chapter.number());
    let shown = match tier {
        Some(0) => return Err("tiers start at 1".into()),
        Some(t) if t > tiers => {
            return Err(format!("hole `{id}` has {tiers} tiers of hints"));
        }
        Some(t) => t,
        // Tier 1 is already in the todo!(); the first call shows tier 2.
        None => (state.get(&key).copied().unwrap_or(1) + 1).min(tiers),
    };
    println!(
        "exercise `{id}` in {} ({}), hints 1 to {shown} of {tiers}:",
        hole.file, chapter.dir_name
    );
    for (n, hint) in hole.hints.iter().enumerate().take(shown) {
        println!("\n  {}. {hint}", n + 1);
    }
    if shown == tiers {
        println!(
            "\nThat is the last hint. The solution is the chapter's own code, in chapters/{}/{} \
             (the book shows it folded under the listing).",
            chapter.dir_name, hole.file
        );
    } else {
        println!("\nRun it again for hint {}.", shown + 1);
    }
    state.insert(key, shown);
    write_state(&state_file, &state)
}

/// The tiers shown so far, by `<chapter> <hole>`; a missing or unreadable
/// file is a fresh start.
fn read_state(path: &Path) -> BTreeMap<String, usize> {
    fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .filter_map(|line| {
            let (key, tier) = line.rsplit_once(' ')?;
            Some((key.to_string(), tier.parse().ok()?))
        })
        .collect()
}

fn write_state(path: &Path, state: &BTreeMap<String, usize>) -> Result<(), String> {
    let text: String = state
        .iter()
        .map(|(key, tier)| format!("{key} {tier}\n"))
        .collect();
    if let Some(dir) = path.parent() {
        fs::create_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    }
    fs::write(path, text).map_err(|e| format!("{}: {e}", path.display()))
}
