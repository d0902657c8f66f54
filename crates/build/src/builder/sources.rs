//! Where COPY and ADD read from: the build context (a host directory, less what
//! `.dockerignore` leaves out) or the root of another stage or image (`--from`).
//!
//! Sources are hostile both ways. In the context, a source path is cleaned as Docker
//! cleans it: an absolute path is taken from the context's root, and one that climbs out
//! (`../x`) is refused; it is then opened with openat2(RESOLVE_BENEATH), so a symlink that
//! leads out of the context (absolute, or climbing) is refused too, rather than read on the
//! host. In an image, paths resolve with RESOLVE_IN_ROOT: its symlinks stay inside it.
//! Directories are read through fds without following symlinks (engine::fs::walk), so
//! symlinks inside a copied tree are copied as symlinks.

use super::BuildError;
use crate::ignore::{clean_path, glob_match, has_wildcards, IgnoreRules};
use engine::fs::walk::{list_dir, walk, Entry, Kind, Sink, WalkOptions};
use image::digest::{Digest, DigestWriter};
use nix::errno::Errno;
use nix::fcntl::{openat2, OFlag, OpenHow, ResolveFlag};
use nix::sys::stat::{fstat, FileStat};
use std::ffi::OsStr;
use std::io::{Read, Write};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::path::{Path, PathBuf};

/// A tree COPY reads from.
pub struct Tree {
    /// None: an image without layers (`scratch`), where nothing is found.
    root: Option<OwnedFd>,
    /// The context's `.dockerignore`; None for an image's root.
    ignore: Option<IgnoreRules>,
}

/// One source as found: a regular file (open for reading) or a directory.
pub enum Item {
    File {
        /// The source's path as matched (relative to the tree's root).
        rel: String,
        file: std::fs::File,
        st: FileStat,
    },
    Dir {
        rel: String,
        dir: OwnedFd,
    },
}

impl Item {
    pub fn rel(&self) -> &str {
        match self {
            Item::File { rel, .. } | Item::Dir { rel, .. } => rel,
        }
    }

    /// The name a file source gets in a destination directory.
    pub fn base(&self) -> String {
        let rel = self.rel();
        rel.rsplit('/').next().unwrap_or(rel).to_string()
    }
}

fn is_dir(st: &FileStat) -> bool {
    st.st_mode & libc::S_IFMT == libc::S_IFDIR
}

fn is_file(st: &FileStat) -> bool {
    st.st_mode & libc::S_IFMT == libc::S_IFREG
}

impl Tree {
    /// The build context at `dir`.
    pub fn context(dir: &Path, ignore: IgnoreRules) -> Result<Tree, BuildError> {
        let fd = nix::fcntl::open(
            dir,
            OFlag::O_PATH | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC,
            nix::sys::stat::Mode::empty(),
        )
        .map_err(|e| BuildError::Other(format!("build context {}: {e}", dir.display())))?;
        Ok(Tree {
            root: Some(fd),
            ignore: Some(ignore),
        })
    }

    /// No context (`berth build -`): every COPY source is missing.
    pub fn none() -> Tree {
        Tree {
            root: None,
            ignore: None,
        }
    }

    /// An image's (or stage's) root, as an fd of its merged tree.
    pub fn image(root: Option<OwnedFd>) -> Tree {
        Tree { root, ignore: None }
    }

    fn resolve(&self) -> ResolveFlag {
        let scope = if self.ignore.is_some() {
            ResolveFlag::RESOLVE_BENEATH
        } else {
            ResolveFlag::RESOLVE_IN_ROOT
        };
        scope | ResolveFlag::RESOLVE_NO_MAGICLINKS
    }

    fn excluded(&self, rel: &str) -> bool {
        self.ignore.as_ref().is_some_and(|i| i.is_excluded(rel))
    }

    /// `path` as Docker reads a source: cleaned, relative to the root; `None` if it climbs
    /// out.
    fn clean(src: &str) -> Option<String> {
        let cleaned = clean_path(src);
        let rel = cleaned.trim_start_matches('/');
        if rel == ".." || rel.starts_with("../") {
            return None;
        }
        Some(if rel.is_empty() {
            ".".into()
        } else {
            rel.into()
        })
    }

    fn open(&self, rel: &str, flags: OFlag) -> Result<OwnedFd, Errno> {
        let root = self.root.as_ref().ok_or(Errno::ENOENT)?;
        let how = OpenHow::new()
            .flags(flags | OFlag::O_CLOEXEC)
            .resolve(self.resolve());
        openat2(root.as_fd(), rel, how)
    }

    /// The sources COPY names (wildcards expanded, in order), each opened.
    pub fn find(&self, sources: &[String]) -> Result<Vec<Item>, BuildError> {
        let mut items = Vec::new();
        for src in sources {
            let rel = Self::clean(src).ok_or_else(|| outside(src))?;
            if has_wildcards(&rel) {
                let found = self.glob(&rel)?;
                if found.is_empty() {
                    return Err(BuildError::Other(format!(
                        "no source files were specified: {src:?} matches nothing"
                    )));
                }
                for rel in found {
                    items.push(self.item(src, rel)?);
                }
            } else {
                if rel != "." && self.excluded(&rel) {
                    return Err(not_found(src));
                }
                items.push(self.item(src, rel)?);
            }
        }
        Ok(items)
    }

    fn item(&self, src: &str, rel: String) -> Result<Item, BuildError> {
        let fd = self
            .open(&rel, OFlag::O_PATH)
            .map_err(|e| open_error(src, e))?;
        let st = fstat(&fd).map_err(|e| open_error(src, e))?;
        if is_dir(&st) {
            let dir = self
                .open(&rel, OFlag::O_RDONLY | OFlag::O_DIRECTORY)
                .map_err(|e| open_error(src, e))?;
            return Ok(Item::Dir { rel, dir });
        }
        if !is_file(&st) {
            return Err(BuildError::Other(format!(
                "{src:?}: not a regular file or directory"
            )));
        }
        let fd = self
            .open(&rel, OFlag::O_RDONLY | OFlag::O_NONBLOCK)
            .map_err(|e| open_error(src, e))?;
        let st = fstat(&fd).map_err(|e| open_error(src, e))?;
        if !is_file(&st) {
            return Err(BuildError::Other(format!("{src:?}: changed while read")));
        }
        Ok(Item::File {
            rel,
            file: std::fs::File::from(fd),
            st,
        })
    }

    /// The paths matching a pattern, element by element (Go's `filepath.Glob` over the
    /// tree), without the ignored ones, sorted.
    fn glob(&self, pattern: &str) -> Result<Vec<String>, BuildError> {
        let mut current = vec![String::new()];
        for part in pattern.split('/') {
            let mut next = Vec::new();
            for base in &current {
                let join = |name: &str| {
                    if base.is_empty() {
                        name.to_string()
                    } else {
                        format!("{base}/{name}")
                    }
                };
                if !has_wildcards(part) {
                    next.push(join(part));
                    continue;
                }
                let dir = match self.open(
                    if base.is_empty() { "." } else { base },
                    OFlag::O_RDONLY | OFlag::O_DIRECTORY,
                ) {
                    Ok(dir) => dir,
                    Err(Errno::EXDEV) => return Err(outside(base)),
                    Err(_) => continue,
                };
                for name in list_dir(dir.as_fd()).unwrap_or_default() {
                    let name = name.to_string_lossy();
                    let matched =
                        glob_match(part, &name).map_err(|e| BuildError::Other(e.to_string()))?;
                    if matched {
                        next.push(join(&name));
                    }
                }
            }
            current = next;
        }
        let mut found: Vec<String> = current
            .into_iter()
            .filter(|rel| !self.excluded(rel))
            .filter(|rel| self.open(rel, OFlag::O_PATH).is_ok())
            .collect();
        found.sort();
        Ok(found)
    }

    /// The host path of a source found in the context, when the context is shown as it
    /// is (no `.dockerignore` patterns that would have to hide parts of it); None for an
    /// image's tree.
    pub fn host_path(&self, item: &Item) -> Option<PathBuf> {
        if !self.ignore.as_ref().is_some_and(IgnoreRules::is_empty) {
            return None;
        }
        let fd = match item {
            Item::Dir { dir, .. } => dir.as_fd(),
            Item::File { file, .. } => file.as_fd(),
        };
        std::fs::read_link(format!("/proc/self/fd/{}", fd.as_raw_fd())).ok()
    }

    /// Walks a directory source into `sink`, its entries named `top/…`, leaving out what
    /// `.dockerignore` excludes.
    /// `exclude` (COPY's `--exclude`) leaves out more, matched against paths below the
    /// directory.
    pub fn walk_dir(
        &self,
        rel: &str,
        dir: BorrowedFd,
        top: &Path,
        exclude: Option<&IgnoreRules>,
        sink: &mut dyn Sink,
    ) -> Result<(), BuildError> {
        let prefix = if rel == "." {
            String::new()
        } else {
            rel.into()
        };
        let skip = |path: &str, _: &FileStat| {
            self.excluded(&format!("{prefix}{path}"))
                || exclude.is_some_and(|e| e.is_excluded(path.trim_start_matches('/')))
        };
        let opts = WalkOptions {
            oci_whiteouts: false,
            skip: Some(&skip),
        };
        walk(dir, OsStr::new("."), top, false, &opts, sink)
            .map_err(|e| BuildError::Other(e.to_string()))
    }
}

fn outside(src: &str) -> BuildError {
    BuildError::Other(format!("forbidden path outside the build context: {src}"))
}

fn not_found(src: &str) -> BuildError {
    BuildError::Other(format!("{src:?}: not found"))
}

fn open_error(src: &str, e: Errno) -> BuildError {
    match e {
        Errno::EXDEV => outside(src),
        Errno::ENOENT | Errno::ENOTDIR => not_found(src),
        Errno::ELOOP => BuildError::Other(format!("{src:?}: too many levels of symbolic links")),
        e => BuildError::Other(format!("{src:?}: {e}")),
    }
}

/// The entry of a regular file source, named `path`.
pub fn file_entry(path: PathBuf, st: &FileStat) -> Entry {
    Entry {
        path,
        kind: Kind::File,
        size: st.st_size as u64,
        mode: st.st_mode & 0o7777,
        uid: st.st_uid,
        gid: st.st_gid,
        mtime: st.st_mtime,
        xattrs: vec![],
    }
}

/// Hashes what a copy depends on: each entry's path, type, permission bits, link target
/// and content; not its owner (COPY sets it) nor its times (as Docker's cache ignores
/// them).
pub struct Checksum {
    hash: DigestWriter<std::io::Sink>,
}

impl Default for Checksum {
    fn default() -> Self {
        Checksum {
            hash: DigestWriter::new(std::io::sink()),
        }
    }
}

impl Checksum {
    pub fn add(&mut self, bytes: &[u8]) {
        let _ = self.hash.write_all(&(bytes.len() as u64).to_le_bytes());
        let _ = self.hash.write_all(bytes);
    }

    pub fn finish(self) -> Digest {
        self.hash.into_parts().1
    }
}

impl Sink for Checksum {
    fn put(&mut self, e: &Entry, data: &mut dyn Read) -> engine::fs::Result<()> {
        use std::os::unix::ffi::OsStrExt;
        self.add(e.path.as_os_str().as_bytes());
        let kind = match &e.kind {
            Kind::File => "f".to_string(),
            Kind::Dir => "d".into(),
            Kind::Symlink(t) => format!("l{}", t.to_string_lossy()),
            Kind::HardLink(t) => format!("h{}", t.display()),
            Kind::Char(a, b) => format!("c{a},{b}"),
            Kind::Block(a, b) => format!("b{a},{b}"),
            Kind::Fifo => "p".into(),
        };
        self.add(kind.as_bytes());
        self.add(&e.mode.to_le_bytes());
        if e.kind == Kind::File {
            let mut content = DigestWriter::new(std::io::sink());
            std::io::copy(data, &mut content).map_err(engine::fs::FsError::Archive)?;
            self.add(content.into_parts().1.to_string().as_bytes());
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tree(files: &[&str], ignore: &str) -> (tempfile::TempDir, Tree) {
        let dir = tempfile::tempdir().unwrap();
        for f in files {
            let p = dir.path().join(f);
            std::fs::create_dir_all(p.parent().unwrap()).unwrap();
            std::fs::write(p, f).unwrap();
        }
        let t = Tree::context(dir.path(), IgnoreRules::parse(ignore).unwrap()).unwrap();
        (dir, t)
    }

    fn rels(items: &[Item]) -> Vec<&str> {
        items.iter().map(Item::rel).collect()
    }

    #[test]
    fn sources_are_found_inside_the_context_only() {
        let (dir, t) = tree(
            &["a.txt", "b.txt", "sub/c.txt", "sub/d.log", "x.log"],
            "x.log\n",
        );
        let found = t.find(&["*.txt".into(), "/sub/c.txt".into(), "sub/../sub".into()]);
        let found = found.unwrap();
        assert_eq!(rels(&found), ["a.txt", "b.txt", "sub/c.txt", "sub"]);
        assert_eq!(rels(&t.find(&["*/*.log".into()]).unwrap()), ["sub/d.log"]);
        // Ignored files are not in the context, by name or by pattern.
        assert!(t.find(&["x.log".into()]).is_err());
        assert!(t.find(&["*.log".into()]).is_err());
        // Climbing out is refused, lexically or through a symlink.
        let msg = |r: Result<Vec<Item>, BuildError>| match r {
            Err(e) => e.to_string(),
            Ok(_) => "found".into(),
        };
        assert!(msg(t.find(&["../x".into()])).contains("outside the build context"));
        std::os::unix::fs::symlink("/etc/passwd", dir.path().join("abs")).unwrap();
        std::os::unix::fs::symlink("../..", dir.path().join("sub/up")).unwrap();
        std::os::unix::fs::symlink("a.txt", dir.path().join("inside")).unwrap();
        assert!(msg(t.find(&["abs".into()])).contains("outside the build context"));
        assert!(msg(t.find(&["sub/up/etc".into()])).contains("outside the build context"));
        assert!(msg(t.find(&["missing".into()])).contains("not found"));
        // A symlink that stays inside is followed; the file keeps the link's name.
        let found = t.find(&["inside".into()]).unwrap();
        assert!(matches!(&found[0], Item::File { rel, .. } if rel == "inside"));
        assert_eq!(found[0].base(), "inside");
    }

    #[test]
    fn checksums_see_content_and_mode_not_times() {
        let (dir, t) = tree(&["d/a", "d/b"], "");
        let sum = |t: &Tree| {
            let mut c = Checksum::default();
            let items = t.find(&["d".into()]).unwrap();
            let Item::Dir { rel, dir } = &items[0] else {
                panic!()
            };
            t.walk_dir(rel, dir.as_fd(), Path::new(""), None, &mut c)
                .unwrap();
            c.finish()
        };
        let first = sum(&t);
        let f = std::fs::File::options()
            .write(true)
            .open(dir.path().join("d/a"))
            .unwrap();
        f.set_modified(std::time::SystemTime::UNIX_EPOCH).unwrap();
        drop(f);
        assert_eq!(sum(&t), first, "mtime is not content");
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(dir.path().join("d/a"), PermissionsExt::from_mode(0o600)).unwrap();
        let moded = sum(&t);
        assert_ne!(moded, first);
        std::fs::write(dir.path().join("d/b"), "other").unwrap();
        assert_ne!(sum(&t), moded);
    }
}
