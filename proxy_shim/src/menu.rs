//! The menu shown when the user logs in without a command on a TTY: the targets this user may
//! reach, chosen by number or name; `q` leaves.
//!
//! Input is read a bounded line at a time; anything else than a number in range, a listed name
//! or `q`/`quit`/`exit` is answered with a hint, and after [`MAX_BAD_ANSWERS`] of those (or at
//! EOF) the menu leaves.

use std::io::{self, BufRead, Read, Write};

/// Wrong answers accepted before the menu gives up.
pub const MAX_BAD_ANSWERS: u32 = 5;
/// Longest input line read, in bytes.
const MAX_LINE: u64 = 256;

/// One menu line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    /// The target's catalog name (what the user may type).
    pub name: String,
    /// Where it goes, e.g. `deploy@10.0.0.5:22`.
    pub detail: String,
}

/// What the user chose.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Choice {
    /// The entry at this index.
    Target(usize),
    /// `q`, EOF, or too many wrong answers.
    Quit,
}

/// Prints the menu and reads the choice.
pub fn choose<R: BufRead, W: Write>(
    entries: &[Entry],
    mut input: R,
    mut output: W,
) -> io::Result<Choice> {
    if entries.is_empty() {
        writeln!(output, "You may not reach any target through this proxy.")?;
        output.flush()?;
        return Ok(Choice::Quit);
    }
    writeln!(output, "Targets you may reach:")?;
    let width = entries.iter().map(|e| e.name.len()).max().unwrap_or(0);
    for (i, entry) in entries.iter().enumerate() {
        writeln!(
            output,
            "  {:>3}) {:<width$}  {}",
            i.saturating_add(1),
            entry.name,
            entry.detail
        )?;
    }
    let mut bad: u32 = 0;
    loop {
        write!(output, "Choose a target (number or name, q to quit): ")?;
        output.flush()?;
        let Some(line) = read_line(&mut input)? else {
            writeln!(output)?;
            return Ok(Choice::Quit);
        };
        let answer = line.trim();
        if let Some(choice) = interpret(entries, answer) {
            return Ok(choice);
        }
        bad = bad.saturating_add(1);
        if bad >= MAX_BAD_ANSWERS {
            writeln!(output, "Too many invalid choices.")?;
            output.flush()?;
            return Ok(Choice::Quit);
        }
        if !answer.is_empty() {
            writeln!(
                output,
                "No such choice. Type a number from 1 to {}, a name from the list, or q.",
                entries.len()
            )?;
        }
    }
}

fn interpret(entries: &[Entry], answer: &str) -> Option<Choice> {
    match answer {
        "q" | "Q" | "quit" | "exit" => return Some(Choice::Quit),
        "" => return None,
        _ => {}
    }
    if answer.bytes().all(|b| b.is_ascii_digit()) && answer.len() <= 6 {
        return answer
            .parse::<usize>()
            .ok()
            .and_then(|n| n.checked_sub(1))
            .filter(|i| *i < entries.len())
            .map(Choice::Target);
    }
    entries
        .iter()
        .position(|e| e.name == answer)
        .map(Choice::Target)
}

/// Reads one line of at most [`MAX_LINE`] bytes; a longer line is consumed and returned as
/// garbage. `None` at EOF.
fn read_line<R: BufRead>(input: &mut R) -> io::Result<Option<String>> {
    let mut raw = Vec::new();
    let n = input.by_ref().take(MAX_LINE).read_until(b'\n', &mut raw)?;
    if n == 0 {
        return Ok(None);
    }
    if !raw.ends_with(b"\n") && n as u64 == MAX_LINE {
        // Skip the rest of an over-long line.
        let mut sink = Vec::new();
        loop {
            sink.clear();
            let m = input.by_ref().take(4096).read_until(b'\n', &mut sink)?;
            if m == 0 || sink.ends_with(b"\n") {
                break;
            }
        }
        return Ok(Some(String::from("\u{0}")));
    }
    Ok(Some(String::from_utf8_lossy(&raw).into_owned()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entries() -> Vec<Entry> {
        ["web01", "web02", "db01"]
            .iter()
            .map(|n| Entry {
                name: (*n).to_owned(),
                detail: format!("deploy@{n}:22"),
            })
            .collect()
    }

    fn run(input: &str) -> (Choice, String) {
        let mut out = Vec::new();
        let choice = choose(&entries(), input.as_bytes(), &mut out).unwrap();
        (choice, String::from_utf8(out).unwrap())
    }

    #[test]
    fn a_number_chooses_that_entry() {
        assert_eq!(run("2\n").0, Choice::Target(1));
        assert_eq!(run(" 3 \n").0, Choice::Target(2));
        assert_eq!(run("1").0, Choice::Target(0));
    }

    #[test]
    fn a_name_chooses_that_entry() {
        assert_eq!(run("db01\n").0, Choice::Target(2));
        assert_eq!(run("web02\r\n").0, Choice::Target(1));
    }

    #[test]
    fn q_and_eof_leave() {
        for input in ["q\n", "quit\n", "exit\n", "Q\n", ""] {
            assert_eq!(run(input).0, Choice::Quit, "{input:?}");
        }
    }

    #[test]
    fn garbage_is_answered_and_asked_again() {
        let (choice, out) = run("0\n4\nweb0\n99999999999999999999\n-1\n2\n");
        assert_eq!(choice, Choice::Quit, "five bad answers end the menu");
        assert!(out.contains("Too many invalid choices."));
        let (choice, out) = run("nope\n$(id)\n\n3\n");
        assert_eq!(choice, Choice::Target(2));
        assert_eq!(out.matches("No such choice").count(), 2, "{out}");
    }

    #[test]
    fn an_over_long_line_is_garbage_not_a_choice() {
        let long = format!("{}1\n2\n", "x".repeat(10_000));
        assert_eq!(run(&long).0, Choice::Target(1));
        let long = format!("{}web01\n", " ".repeat(300));
        assert_eq!(run(&long).0, Choice::Quit);
    }

    #[test]
    fn the_menu_lists_numbers_names_and_details() {
        let (_, out) = run("q\n");
        assert!(out.contains("  1) web01  deploy@web01:22"), "{out}");
        assert!(out.contains("  3) db01   deploy@db01:22"), "{out}");
    }

    #[test]
    fn no_targets_means_no_menu() {
        let mut out = Vec::new();
        let choice = choose(&[], "1\n".as_bytes(), &mut out).unwrap();
        assert_eq!(choice, Choice::Quit);
        assert!(String::from_utf8(out)
            .unwrap()
            .contains("not reach any target"));
    }
}
