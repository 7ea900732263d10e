//! `completions <shell>` and `man`: generated from each binary's clap definition, so they
//! cannot drift from the flags.

use std::io::Write;
use std::path::{Path, PathBuf};

/// `completions <SHELL>`: the completion script on stdout.
#[derive(Debug, Clone, clap::Args)]
pub struct CompletionsArgs {
    /// The shell to complete for.
    #[arg(value_enum)]
    pub shell: clap_complete::Shell,
}

/// `man [--dir DIR]`: the top page on stdout, or every page into DIR.
#[derive(Debug, Clone, clap::Args)]
pub struct ManArgs {
    /// Write BIN.1 and one page per subcommand (BIN-SUB.1) into this directory, instead of
    /// the top page on stdout.
    #[arg(long)]
    pub dir: Option<PathBuf>,
}

impl CompletionsArgs {
    /// Writes the script for `cmd` (the binary's whole clap command) to stdout.
    pub fn run(&self, mut cmd: clap::Command) -> std::io::Result<()> {
        let name = cmd.get_name().to_string();
        let mut stdout = std::io::stdout().lock();
        clap_complete::generate(self.shell, &mut cmd, name, &mut stdout);
        stdout.flush()
    }
}

impl ManArgs {
    /// Writes the pages for `cmd`; returns the files written (none for stdout).
    pub fn run(&self, cmd: clap::Command) -> std::io::Result<Vec<PathBuf>> {
        match &self.dir {
            None => {
                let mut stdout = std::io::stdout().lock();
                clap_mangen::Man::new(cmd).render(&mut stdout)?;
                stdout.flush()?;
                Ok(Vec::new())
            }
            Some(dir) => write_pages(cmd, dir),
        }
    }
}

/// One page per command and subcommand, named as git names its own (`byok-online-kek-create.1`).
fn write_pages(cmd: clap::Command, dir: &Path) -> std::io::Result<Vec<PathBuf>> {
    std::fs::create_dir_all(dir)?;
    let mut cmd = cmd;
    cmd.build();
    let mut written = Vec::new();
    let mut stack = vec![(cmd.get_name().to_string(), cmd)];
    while let Some((name, cmd)) = stack.pop() {
        for sub in cmd.get_subcommands().filter(|s| !s.is_hide_set()) {
            if sub.get_name() != "help" {
                stack.push((format!("{name}-{}", sub.get_name()), sub.clone()));
            }
        }
        let path = dir.join(format!("{name}.1"));
        let mut buf = Vec::new();
        clap_mangen::Man::new(cmd.name(name.clone())).render(&mut buf)?;
        std::fs::write(&path, buf)?;
        written.push(path);
    }
    written.sort();
    Ok(written)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cli() -> clap::Command {
        clap::Command::new("tool")
            .about("A tool")
            .subcommand(clap::Command::new("kek").subcommand(clap::Command::new("create")))
            .subcommand(clap::Command::new("show").about("Show a key"))
    }

    #[test]
    fn a_page_for_every_subcommand() {
        let dir = tempfile::tempdir().unwrap();
        let pages = ManArgs {
            dir: Some(dir.path().into()),
        }
        .run(cli())
        .unwrap();
        let names: Vec<String> = pages
            .iter()
            .map(|p| p.file_name().unwrap().to_string_lossy().into_owned())
            .collect();
        assert_eq!(
            names,
            ["tool-kek-create.1", "tool-kek.1", "tool-show.1", "tool.1"]
        );
        let show = std::fs::read_to_string(dir.path().join("tool-show.1")).unwrap();
        assert!(show.contains("Show a key"), "{show}");
    }
}
