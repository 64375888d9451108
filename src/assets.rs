//! `tcpchat generate-assets DIR` (a hidden subcommand): the man pages and the shell
//! completions, made from the same clap definition as `--help`, so that they cannot drift
//! from it. `scripts/package.sh` puts them in the Debian package.
//!
//! Part of the binary (main.rs declares it), not of the library.

use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use clap_complete::Shell;
use clap_mangen::Man;
use clap_mangen::roff::{Roff, bold, roman};

/// The shells whose completions are generated, with the file name each expects.
const SHELLS: [Shell; 3] = [Shell::Bash, Shell::Zsh, Shell::Fish];

/// Writes into `dir` (created if missing) `tcpchat.1`, one `tcpchat-SUBCOMMAND.1` per
/// subcommand, and the completions `tcpchat.bash`, `_tcpchat` and `tcpchat.fish`.
/// Returns the files written.
pub fn generate(command: clap::Command, dir: &Path) -> io::Result<Vec<PathBuf>> {
    fs::create_dir_all(dir)?;
    let mut command = command.disable_help_subcommand(true);
    command.build();
    let name = command.get_name().to_owned();
    let mut written = Vec::new();
    for subcommand in command.get_subcommands().filter(|sub| !sub.is_hide_set()) {
        written.push(Man::new(subcommand.clone()).generate_to(dir)?);
    }
    let main_page = dir.join(format!("{name}.1"));
    fs::write(&main_page, main_page_text(&command)?)?;
    written.push(main_page);
    for shell in SHELLS {
        written.push(clap_complete::generate_to(shell, &mut command, &name, dir)?);
    }
    Ok(written)
}

/// The main page: clap_mangen's sections, then what `--help` has no room for (signals,
/// exit status, the environment systemd sets).
fn main_page_text(command: &clap::Command) -> io::Result<Vec<u8>> {
    let man = Man::new(command.clone());
    let mut page = Vec::new();
    man.render_title(&mut page)?;
    man.render_name_section(&mut page)?;
    man.render_synopsis_section(&mut page)?;
    man.render_description_section(&mut page)?;
    man.render_options_section(&mut page)?;
    man.render_subcommands_section(&mut page)?;
    service_sections().to_writer(&mut page)?;
    man.render_version_section(&mut page)?;
    Ok(page)
}

fn service_sections() -> Roff {
    let mut roff = Roff::default();
    roff.control("SH", ["SIGNALS"]);
    entry(
        &mut roff,
        "SIGINT, SIGTERM",
        "The first stops accepting and drains: clients may go on for --drain-timeout \
         seconds, then the server says goodbye, closes them and exits 0. A second one \
         exits at once with status 130.",
    );
    roff.control("SH", ["EXIT STATUS"]);
    entry(&mut roff, "0", "The server shut down cleanly.");
    entry(
        &mut roff,
        "1",
        "It could not start (the port is taken, a file cannot be opened or is not a \
         tcpchat history database) or could not finish cleanly (lines of the transcript, \
         dump or history not stored); one line on stderr says why.",
    );
    entry(
        &mut roff,
        "2",
        "A mistake in the command line or options: the usage error says what.",
    );
    entry(
        &mut roff,
        "130",
        "A second SIGINT or SIGTERM cut the drain short.",
    );
    roff.control("SH", ["ENVIRONMENT"]);
    entry(
        &mut roff,
        "RUST_LOG",
        "Overrides -q and -v, e.g. RUST_LOG=debug.",
    );
    entry(
        &mut roff,
        "LISTEN_PID, LISTEN_FDS, LISTEN_FDNAMES",
        "Socket activation (systemd.socket(5)): when LISTEN_PID is this process, the \
         first socket passed (descriptor 3) is the listener and --host and --port are \
         ignored; a second one (descriptor 4, or the one named \"web\") serves the web \
         page as --web would. The variables are removed once read.",
    );
    entry(
        &mut roff,
        "NOTIFY_SOCKET",
        "Type=notify (sd_notify(3)): READY=1 once listening, STOPPING=1 when the drain \
         begins.",
    );
    entry(
        &mut roff,
        "JOURNAL_STREAM",
        "When it names stderr, log lines carry no timestamp and start with their syslog \
         priority (<3> error, <4> warning, <6> info, <7> debug), which the journal reads.",
    );
    roff.control("SH", ["FILES"]);
    entry(
        &mut roff,
        "/etc/default/tcpchat",
        "Options for the systemd service, in TCPCHAT_OPTS (Debian package).",
    );
    entry(
        &mut roff,
        "/usr/lib/systemd/system/tcpchat.service, /usr/lib/systemd/system/tcpchat.socket",
        "The service and its socket (Debian package).",
    );
    roff.control("SH", ["SEE ALSO"]);
    roff.text([roman(
        "nc(1), telnet(1), systemd.socket(5), systemd.exec(5), journalctl(1)",
    )]);
    roff
}

/// One `.TP` entry: the term in bold, its text below.
fn entry(roff: &mut Roff, term: &str, text: &str) {
    roff.control("TP", [])
        .text([bold(term)])
        .text([roman(text)]);
}
