//! `BIN-VERSION-x86_64-unknown-linux-gnu.tar.gz`: one directory of that name holding the
//! binary, `README.md` (an excerpt of the workspace README), `LICENSE-MIT`, `LICENSE-APACHE`,
//! the SBOM, `completions/` and `man/man1/`.
//!
//! GNU tar with `--sort=name`, `--mtime` at the source's time, owner and group 0, and
//! `gzip -n` (no name, no time in the header) make the same archive from the same files.

use super::{Parts, Source, TARGET, Tree};
use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

/// The README sections an operator needs, in this order; `dist` fails when one is missing, so
/// a renamed heading is noticed (rename it here too).
const SECTIONS: [&str; 3] = [
    "The ceremony",
    "Installing the two binaries",
    "A real vault and HSM, step by step",
];

/// Each shell's completion file name in the tarball, for `bin`.
pub fn completion_name(shell: &str, bin: &str) -> String {
    match shell {
        "bash" => format!("{bin}.bash"),
        "zsh" => format!("_{bin}"),
        "fish" => format!("{bin}.fish"),
        "elvish" => format!("{bin}.elv"),
        _ => format!("_{bin}.ps1"),
    }
}

/// Stages the files and writes the archive into `tree.out`.
pub fn write(tree: &Tree, source: &Source, parts: &Parts<'_>) -> Result<PathBuf, String> {
    let bin = parts.bin;
    let name = format!("{bin}-{}-{TARGET}", source.version);
    let stage = tree.stage(&["tar", bin])?;
    let top = stage.join(&name);
    super::copy_file(parts.exe, &top.join(bin), 0o755)?;
    super::write_file(&top.join("README.md"), parts.readme.as_bytes(), 0o644)?;
    for licence in ["LICENSE-MIT", "LICENSE-APACHE"] {
        super::copy_file(&tree.root.join(licence), &top.join(licence), 0o644)?;
    }
    let sbom = top.join(super::file_name(parts.sbom));
    super::copy_file(parts.sbom, &sbom, 0o644)?;
    for (shell, script) in &parts.docs.completions {
        let path = top.join("completions").join(completion_name(shell, bin));
        super::write_file(&path, script, 0o644)?;
    }
    for page in &parts.docs.man {
        let to = top.join("man").join("man1").join(super::file_name(page));
        super::copy_file(page, &to, 0o644)?;
    }
    super::normalize(&stage, source)?;
    let out = tree.out.join(format!("{name}.tar.gz"));
    tar_gz(&stage, &name, source, parts.compression.gzip, &out)?;
    Ok(out)
}

/// `tar -C dir -c name | gzip LEVEL -n > out`, deterministically.
fn tar_gz(dir: &Path, name: &str, source: &Source, level: &str, out: &Path) -> Result<(), String> {
    let mut tar = Command::new("tar")
        .arg("-C")
        .arg(dir)
        .args(["--create", "--format=gnu", "--sort=name", "--numeric-owner"])
        .args(["--owner=0", "--group=0"])
        .arg(format!("--mtime=@{}", source.epoch))
        .args(["--file", "-", name])
        .stdout(Stdio::piped())
        .spawn()
        .map_err(|e| format!("could not run tar ({e}); install GNU tar"))?;
    let file = File::create(out).map_err(|e| format!("{}: {e}", out.display()))?;
    let gzip = Command::new("gzip")
        .args([level, "-n"])
        .stdin(tar.stdout.take().expect("piped"))
        .stdout(file)
        .status()
        .map_err(|e| format!("could not run gzip ({e}); install gzip"))?;
    let tar = tar.wait().map_err(|e| e.to_string())?;
    if !tar.success() || !gzip.success() {
        return Err(format!(
            "making {} failed (tar {tar}, gzip {gzip})",
            out.display()
        ));
    }
    Ok(())
}

/// The README's title paragraph and [`SECTIONS`], under a heading naming `bin`.
pub fn readme_excerpt(root: &Path, bin: &str, source: &Source) -> Result<String, String> {
    let path = root.join("README.md");
    let readme = std::fs::read_to_string(&path).map_err(|e| format!("{}: {e}", path.display()))?;
    let mut text = format!(
        "# {bin} {}\n\nFrom the byok-toolkit README, at commit {}.\n\n",
        source.version, source.commit
    );
    text.push_str(&intro(&readme));
    for heading in SECTIONS {
        let section = section(&readme, heading).ok_or_else(|| {
            format!(
                "README.md has no `## {heading}` section, which the packages' README excerpt \
                 takes; restore it or change SECTIONS in xtask/src/dist/tarball.rs"
            )
        })?;
        text.push('\n');
        text.push_str(section.trim_end());
        text.push('\n');
    }
    Ok(text)
}

/// The first paragraph after the `# ` title.
fn intro(readme: &str) -> String {
    let mut lines = readme.lines().skip_while(|l| !l.starts_with("# ")).skip(1);
    let paragraph: Vec<&str> = lines
        .by_ref()
        .skip_while(|l| l.trim().is_empty())
        .take_while(|l| !l.trim().is_empty())
        .collect();
    format!("{}\n", paragraph.join("\n"))
}

/// `## heading` and its text up to the next `## ` heading (its `### ` subsections included).
fn section<'a>(readme: &'a str, heading: &str) -> Option<&'a str> {
    let start = readme.match_indices("## ").map(|(i, _)| i).find(|&i| {
        (i == 0 || readme.as_bytes()[i - 1] == b'\n')
            && readme[i + 3..].lines().next().map(str::trim) == Some(heading)
    })?;
    let rest = &readme[start..];
    let end = rest[3..].find("\n## ").map_or(rest.len(), |i| i + 4);
    Some(&rest[..end])
}

#[cfg(test)]
mod tests {
    use super::*;

    const README: &str = "# tool\n\nIntro line one\nline two.\n\n```sh\nx\n```\n\n## A\n\
                          text a\n### A.1\nsub\n\n## B\ntext b\n";

    #[test]
    fn a_section_runs_to_the_next_second_level_heading() {
        assert_eq!(section(README, "A"), Some("## A\ntext a\n### A.1\nsub\n\n"));
        assert_eq!(section(README, "B"), Some("## B\ntext b\n"));
        assert_eq!(section(README, "A.1"), None);
        assert_eq!(section(README, "C"), None);
    }

    #[test]
    fn the_intro_is_the_first_paragraph() {
        assert_eq!(intro(README), "Intro line one\nline two.\n");
    }
}
