//! Topic names, checked as Kafka checks them
//! (`org.apache.kafka.common.internals.Topic.validate`).
//!
//! A topic name becomes a directory name (`<topic>-<partition>`) and, in
//! Kafka, part of metric names, so it is kept to characters that are safe
//! in both.

/// The longest topic name: 255 (a common file name limit) minus room for
/// `-<partition>` and the suffix a deleted partition's directory gets.
pub const MAX_LEN: usize = 249;

/// Which naming rule a topic name breaks.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NameError {
    /// The name is empty.
    #[error("a topic name cannot be empty")]
    Empty,
    /// The name is `.` or `..`, which are directory names already.
    #[error("a topic name cannot be \".\" or \"..\"")]
    DotOrDotDot,
    /// The name is longer than [`MAX_LEN`].
    #[error("topic name is {len} characters long; the limit is {MAX_LEN}")]
    TooLong {
        /// The name's length in bytes.
        len: usize,
    },
    /// The name has a character outside `a-z A-Z 0-9 . _ -`.
    #[error(
        "topic name {name:?} has {character:?} at position {position}; only ASCII letters, digits, '.', '_' and '-' are allowed"
    )]
    IllegalCharacter {
        /// The whole name.
        name: String,
        /// The first character that is not allowed.
        character: char,
        /// Its position, counted in characters from 0.
        position: usize,
    },
}

// ANCHOR: validate
/// Checks `name` against Kafka's rules for topic names, and says which rule
/// it breaks.
pub fn validate(name: &str) -> Result<(), NameError> {
    // exercise-hole: validate | Check, in this order: empty; "." or ".."; longer than MAX_LEN bytes; then find the first character that is not an ASCII letter, digit, '.', '_' or '-' and report it with its position (`char_indices` counts bytes; `chars().enumerate()` counts characters).
    // exercise-hint: Each rule is its own `NameError` variant; return at the first that fails. "Position" is a character index, so use `chars().enumerate()`, not `char_indices()`.
    // exercise-hint: The allowed set is `c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-')`; `name.chars().enumerate().find(|&(_, c)| !allowed(c))` finds the first offender for `NameError::IllegalCharacter { name, character, position }`.
    if name.is_empty() {
        return Err(NameError::Empty);
    }
    if name == "." || name == ".." {
        return Err(NameError::DotOrDotDot);
    }
    if name.len() > MAX_LEN {
        return Err(NameError::TooLong { len: name.len() });
    }
    let allowed = |c: char| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-');
    if let Some((position, character)) = name.chars().enumerate().find(|&(_, c)| !allowed(c)) {
        return Err(NameError::IllegalCharacter {
            name: name.to_string(),
            character,
            position,
        });
    }
    Ok(())
    // exercise-end
}
// ANCHOR_END: validate

/// The name with `.` replaced by `_`: two topics whose names agree on this
/// would have the same metric names in Kafka (which turns `.` into `_`
/// there), so Kafka refuses to create the second one. So do we.
pub fn collision_key(name: &str) -> String {
    name.replace('.', "_")
}

/// Whether the name has a character that could collide (`.` or `_`).
/// Kafka's tools print a warning for such names; we return one.
pub fn has_collision_chars(name: &str) -> bool {
    name.contains(['.', '_'])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_rules_as_a_table() {
        let long = "a".repeat(MAX_LEN);
        let too_long = "a".repeat(MAX_LEN + 1);
        let cases: &[(&str, Result<(), NameError>)] = &[
            ("orders", Ok(())),
            ("Orders.v2_eu-west-1", Ok(())),
            ("__consumer_offsets", Ok(())),
            ("...", Ok(())),
            ("-", Ok(())),
            (&long, Ok(())),
            ("", Err(NameError::Empty)),
            (".", Err(NameError::DotOrDotDot)),
            ("..", Err(NameError::DotOrDotDot)),
            (&too_long, Err(NameError::TooLong { len: MAX_LEN + 1 })),
            ("a b", Err(illegal("a b", ' ', 1))),
            ("a/b", Err(illegal("a/b", '/', 1))),
            ("orders!", Err(illegal("orders!", '!', 6))),
            ("café", Err(illegal("café", 'é', 3))),
            ("tab\t", Err(illegal("tab\t", '\t', 3))),
        ];
        for (name, expected) in cases {
            assert_eq!(&validate(name), expected, "{name:?}");
        }
    }

    fn illegal(name: &str, character: char, position: usize) -> NameError {
        NameError::IllegalCharacter {
            name: name.to_string(),
            character,
            position,
        }
    }

    #[test]
    fn the_error_says_which_rule() {
        assert_eq!(
            validate("a:b").unwrap_err().to_string(),
            "topic name \"a:b\" has ':' at position 1; only ASCII letters, digits, '.', '_' and '-' are allowed"
        );
        assert_eq!(
            validate(&"x".repeat(300)).unwrap_err().to_string(),
            "topic name is 300 characters long; the limit is 249"
        );
    }

    #[test]
    fn dots_and_underscores_collide() {
        assert_eq!(collision_key("a.b_c"), "a_b_c");
        assert_eq!(collision_key("a_b.c"), collision_key("a.b_c"));
        assert_ne!(collision_key("a-b"), collision_key("a_b"));
        assert!(has_collision_chars("a.b"));
        assert!(has_collision_chars("a_b"));
        assert!(!has_collision_chars("a-b"));
    }
}
