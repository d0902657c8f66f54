//! The ELF entry point of berth-runtime: the CVE-2019-5736 re-exec, done before glibc starts.
//!
//! `runtime::exeseal::ensure` re-executes create, run and exec from a read-only view of the
//! binary. Done from `main`, the first process pays a whole glibc start-up only to throw it
//! away: CPUID probing traps to the hypervisor here, ~0.3 ms per start (docs/kernel-notes.md).
//! So the linker makes `berth_entry` the entry point (build/static_exe.rs). It reads argv
//! from the initial stack and, when the command enters a container and the executable is
//! not on a read-only mount yet, makes the same detached read-only bind mount
//! (open_tree + mount_setattr) and executes it, all with raw system calls. Anything else,
//! and any failure, continues to glibc's `_start`, where `exeseal::ensure` does the whole
//! job, with its memfd fallback. The re-executed process finds itself on a read-only mount
//! and goes straight on, so the two paths cannot loop.
//!
//! Nothing here may use what glibc has not set up yet: no libc function (even memcpy and
//! strlen are IFUNCs that are not resolved yet), no thread-local (no %fs), no allocation,
//! no panic. Only `core`, raw pointers and `syscall` instructions; bytes are read with
//! `read_volatile` so that the compiler cannot turn a loop into a call to memcmp.

use core::ptr::read_volatile;
use core::sync::atomic::{AtomicBool, Ordering};

/// Set by the entry point when it found the executable already on a read-only mount (it
/// re-executed into one, or the binary lives on one), so `main` need not ask again. A
/// plain static: it needs no thread-local, so it may be written before glibc starts.
static READ_ONLY_EXE: AtomicBool = AtomicBool::new(false);

/// Whether the entry point already knows the executable is on a read-only mount.
pub fn exe_is_read_only() -> bool {
    READ_ONLY_EXE.load(Ordering::Relaxed)
}

/// Global flags that take a value (the next word), as `main` parses them.
const VALUED_FLAGS: &[&[u8]] = &[
    b"--root",
    b"--log",
    b"--log-format",
    b"--criu",
    b"--rootless",
];

/// The commands that enter a container.
const ENTERING: &[&[u8]] = &[b"create", b"run", b"exec"];

/// Set by `exeseal`'s own (memfd) re-exec: such a process is not on a read-only mount but
/// must not re-execute again; `exeseal::ensure` removes it.
#[cfg(target_arch = "x86_64")]
const SEALED_MARK: &[u8] = b"_BERTH_RUNTIME_SEALED=";

// The kernel starts a static executable at its entry with the stack pointer at argc and
// every other register zero (rdx, the exit hook glibc's `_start` expects, included).
// `early` returns only when glibc should start as usual; the stack is then restored
// exactly as the kernel left it.
#[cfg(target_arch = "x86_64")]
core::arch::global_asm!(
    ".globl berth_entry",
    ".type berth_entry,@function",
    "berth_entry:",
    "mov r12, rsp",
    "mov rdi, rsp",
    "and rsp, -16",
    "call {early}",
    "mov rsp, r12",
    "xor edx, edx",
    "jmp _start",
    early = sym early,
);

#[cfg(target_arch = "x86_64")]
/// # Safety
/// Called only from `berth_entry`, with the initial process stack.
unsafe extern "C" fn early(sp: *const usize) {
    // SAFETY: the initial stack holds argc, argv[0..argc], NULL, envp..., NULL.
    unsafe {
        let argc = *sp;
        let argv = sp.add(1) as *const *const u8;
        let envp = argv.add(argc + 1);
        if !enters_container(argv, argc) || has_env(envp, SEALED_MARK) {
            return;
        }
        seal_and_exec(argv, envp);
    }
}

/// Whether the command puts this binary inside a container (create, run, exec): the first
/// word that is neither a global flag nor the value of one. `main` asks the same question
/// through this function, so the two paths agree.
///
/// # Safety
/// `argv` points to `argc` valid NUL-terminated strings.
pub unsafe fn enters_container(argv: *const *const u8, argc: usize) -> bool {
    let mut i = 1;
    while i < argc {
        // SAFETY: i < argc.
        let a = unsafe { *argv.add(i) };
        // SAFETY: a is a NUL-terminated string (caller).
        unsafe {
            if is_any(a, VALUED_FLAGS) {
                i += 2;
                continue;
            }
            if read_volatile(a) != b'-' {
                return is_any(a, ENTERING);
            }
        }
        i += 1;
    }
    false
}

/// # Safety
/// `s` is a NUL-terminated string.
unsafe fn is_any(s: *const u8, words: &[&[u8]]) -> bool {
    let mut w = 0;
    while w < words.len() {
        // SAFETY: s is NUL-terminated (caller); when it starts with the word, the byte
        // after the word is still inside it (its NUL at the latest).
        let hit = unsafe { starts_with(s, words[w]) && read_volatile(s.add(words[w].len())) == 0 };
        if hit {
            return true;
        }
        w += 1;
    }
    false
}

/// # Safety
/// `s` is a NUL-terminated string.
unsafe fn starts_with(s: *const u8, prefix: &[u8]) -> bool {
    let mut i = 0;
    while i < prefix.len() {
        // SAFETY: every byte up to the first mismatch (a NUL at the latest) is in the string.
        if unsafe { read_volatile(s.add(i)) } != prefix[i] {
            return false;
        }
        i += 1;
    }
    true
}

#[cfg(target_arch = "x86_64")]
/// # Safety
/// `envp` is a NULL-terminated array of NUL-terminated strings.
unsafe fn has_env(envp: *const *const u8, prefix: &[u8]) -> bool {
    let mut e = envp;
    // SAFETY: walks up to the terminating NULL.
    unsafe {
        while !(*e).is_null() {
            if starts_with(*e, prefix) {
                return true;
            }
            e = e.add(1);
        }
    }
    false
}

#[cfg(target_arch = "x86_64")]
/// The detached read-only bind mount of `exeseal`, then execveat of it. Returns only when
/// something failed or nothing is needed.
///
/// # Safety
/// `argv` and `envp` are the process's initial vectors.
unsafe fn seal_and_exec(argv: *const *const u8, envp: *const *const u8) {
    const EXE: &[u8] = b"/proc/self/exe\0";
    const ST_RDONLY: u64 = 1;
    const OPEN_TREE_CLONE: usize = 1;
    const O_CLOEXEC: usize = 0o2000000;
    const AT_FDCWD: isize = -100;
    const AT_EMPTY_PATH: usize = 0x1000;
    // struct statfs on x86_64: eleven 8-byte fields (f_flags is the eleventh) and 4 spare.
    // Left uninitialised: zeroing it could become a call to memset.
    let mut st = core::mem::MaybeUninit::<[u64; 15]>::uninit();
    // SAFETY: statfs writes the whole 120-byte struct on success.
    let r = unsafe {
        syscall(
            libc::SYS_statfs,
            EXE.as_ptr() as usize,
            st.as_mut_ptr() as usize,
            0,
            0,
            0,
        )
    };
    if r < 0 {
        return;
    }
    // SAFETY: statfs succeeded, so st is written.
    if unsafe { st.assume_init_ref()[10] } & ST_RDONLY != 0 {
        READ_ONLY_EXE.store(true, Ordering::Relaxed);
        return;
    }
    let flags = OPEN_TREE_CLONE | O_CLOEXEC;
    // SAFETY: open_tree takes a path and flags and returns a new fd or an error.
    let fd = unsafe {
        syscall(
            libc::SYS_open_tree,
            AT_FDCWD as usize,
            EXE.as_ptr() as usize,
            flags,
            0,
            0,
        )
    };
    if fd < 0 {
        return;
    }
    // struct mount_attr: attr_set, attr_clr, propagation, userns_fd.
    let attr: [u64; 4] = [runtime::exeseal::VIEW_ATTRS, 0, 0, 0];
    let empty = b"\0";
    // SAFETY: attr is a live mount_attr of the size passed; the path is an empty C string.
    let r = unsafe {
        syscall(
            libc::SYS_mount_setattr,
            fd as usize,
            empty.as_ptr() as usize,
            AT_EMPTY_PATH,
            attr.as_ptr() as usize,
            core::mem::size_of_val(&attr),
        )
    };
    if r == 0 {
        // SAFETY: argv and envp are the kernel's NULL-terminated vectors; on success this
        // does not return.
        unsafe {
            syscall(
                libc::SYS_execveat,
                fd as usize,
                empty.as_ptr() as usize,
                argv as usize,
                envp as usize,
                AT_EMPTY_PATH,
            )
        };
    }
    // SAFETY: fd is ours; glibc's path starts from scratch.
    unsafe { syscall(libc::SYS_close, fd as usize, 0, 0, 0, 0) };
}

#[cfg(target_arch = "x86_64")]
/// A system call without libc (whose `syscall()` would set errno, a thread-local).
///
/// # Safety
/// As the system call `n` with these arguments.
unsafe fn syscall(n: libc::c_long, a1: usize, a2: usize, a3: usize, a4: usize, a5: usize) -> isize {
    let ret: isize;
    // SAFETY: the x86_64 system call convention; rcx and r11 are clobbered by `syscall`.
    unsafe {
        core::arch::asm!(
            "syscall",
            inlateout("rax") n as isize => ret,
            in("rdi") a1,
            in("rsi") a2,
            in("rdx") a3,
            in("r10") a4,
            in("r8") a5,
            lateout("rcx") _,
            lateout("r11") _,
            options(nostack),
        );
    }
    ret
}

#[cfg(test)]
mod tests {
    use super::enters_container;
    use std::ffi::CString;

    fn enters(args: &[&str]) -> bool {
        let c: Vec<CString> = args.iter().map(|a| CString::new(*a).unwrap()).collect();
        let p: Vec<*const u8> = c.iter().map(|a| a.as_ptr() as *const u8).collect();
        // SAFETY: p holds p.len() live C strings.
        unsafe { enters_container(p.as_ptr(), p.len()) }
    }

    #[test]
    fn the_command_is_the_first_word_that_is_no_flag_or_its_value() {
        assert!(enters(&["rt", "create", "x"]));
        assert!(enters(&["rt", "--root", "/r", "run", "-b", "."]));
        assert!(enters(&["rt", "--debug", "--log", "run", "exec", "x"]));
        assert!(enters(&["rt", "--systemd-cgroup", "exec", "x", "sh"]));
        assert!(!enters(&["rt", "--root", "run", "state", "x"]));
        assert!(!enters(&["rt", "delete", "create"]));
        assert!(!enters(&["rt", "runx"]));
        assert!(!enters(&["rt", "ru"]));
        assert!(!enters(&["rt", "--log"]));
        assert!(!enters(&["rt"]));
        assert!(!enters(&["rt", "--version"]));
    }
}
