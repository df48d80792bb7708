//! Kernel messages that cut into a program's console line.
//!
//! The kernel writes a message to the serial console whole, but a program's line can be split
//! (two `write`s, or the UART's transmit buffer drained in parts), so a message can land inside
//! it: `kml6: status=0[    0.82] kml: ...\n` and the rest of the line after. Tests compare
//! program lines exactly, so the harness puts each such message back after the line it cut.

/// `text` with every kernel message (`[ seconds.micros] ...` up to its newline) that began
/// inside a line moved to just after that line; everything else as it was.
pub(crate) fn untangle(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut line = String::new();
    let mut held = String::new();
    for mut piece in text.split_inclusive('\n') {
        // A kernel message inside the open line runs to the newline that ends `piece`.
        if let Some(at) = (0..piece.len()).find(|&i| {
            (i > 0 || !line.is_empty()) && piece.is_char_boundary(i) && is_stamp(&piece[i..])
        }) {
            line.push_str(&piece[..at]);
            held.push_str(&piece[at..]);
            piece = "";
        }
        line.push_str(piece);
        if line.ends_with('\n') {
            out.push_str(&line);
            out.push_str(&held);
            line.clear();
            held.clear();
        }
    }
    out + &line + &held
}

/// Whether `s` starts with a printk time stamp: `[`, spaces, seconds, `.`, six digits, `] `.
fn is_stamp(s: &str) -> bool {
    let Some(rest) = s.strip_prefix('[') else {
        return false;
    };
    let rest = rest.trim_start_matches(' ');
    let Some((secs, rest)) = rest.split_once('.') else {
        return false;
    };
    let micros = rest.get(..6).unwrap_or("");
    !secs.is_empty()
        && secs.bytes().all(|b| b.is_ascii_digit())
        && micros.len() == 6
        && micros.bytes().all(|b| b.is_ascii_digit())
        && rest[6..].starts_with("] ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_message_inside_a_line_goes_after_it() {
        let console = "boot\nkml6: sharefs status=0[    0.828022] kml: CPL 3: userns\n\nnext\n";
        assert_eq!(
            untangle(console),
            "boot\nkml6: sharefs status=0\n[    0.828022] kml: CPL 3: userns\nnext\n"
        );
    }

    #[test]
    fn messages_splitting_a_line_in_several_places() {
        let console = "ab[    1.000000] one\n[    1.000001] two\ncd[   12.500000] three\nef\n";
        assert_eq!(
            untangle(console),
            "abcdef\n[    1.000000] one\n[    1.000001] two\n[   12.500000] three\n"
        );
        assert_eq!(untangle("é[    1.000000] é\nü\n"), "éü\n[    1.000000] é\n");
    }

    #[test]
    fn whole_lines_and_unfinished_lines_are_kept() {
        for console in [
            "[    0.000000] Linux version 6.1\nlupine: exit status 0\n[    2.000000] reboot\n",
            "# [    3.000000] reboot: Restarting system\n",
            "a [1.5] b [x.000000] c [1.000000]d\n",
            "unfinished",
            "é[    1.000000] é\n",
        ] {
            assert_eq!(untangle(console), console);
        }
    }
}
