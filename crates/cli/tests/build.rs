//! `berth build` on real containers: busybox imported into a store of the test's own,
//! contexts in the test's directory. Each test checks the effect of what it builds in
//! the image's config (read back as stored) or in a container run from it.

#[path = "../../registry/tests/common/mod.rs"]
mod common;
mod support;

use common::Registry;
use serde_json::Value;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use support::Berth;

/// A context directory `name` in the test's directory with these files.
fn context(b: &Berth, name: &str, files: &[(&str, &str)]) -> PathBuf {
    let dir = b.tmp.path().join(name);
    for (path, content) in files {
        let p = dir.join(path);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(&p, content).unwrap();
    }
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn build(b: &Berth, args: &[&str], dir: &Path) -> (i32, String, String) {
    let mut all: Vec<&str> = vec!["build"];
    all.extend(args);
    all.push(dir.to_str().unwrap());
    b.code(&all)
}

fn build_ok(b: &Berth, args: &[&str], dir: &Path) -> String {
    let (code, out, err) = build(b, args, dir);
    assert_eq!(code, 0, "build failed:\n{out}\n{err}");
    out
}

/// The image's config as stored (history with empty_layer, OnBuild and all).
fn config(b: &Berth, name: &str) -> Value {
    let id = b.image_id(name);
    let hex = id.trim_start_matches("sha256:");
    let bytes = std::fs::read(b.root().join("blobs/sha256").join(hex)).unwrap();
    serde_json::from_slice(&bytes).unwrap()
}

fn run(b: &Berth, args: &[&str]) -> String {
    let mut all = vec!["run", "--rm", "--network", "none"];
    all.extend(args);
    b.ok(&all)
}

#[test]
fn multi_stage_build_runs_from_scratch() {
    let b = Berth::with_busybox();
    let dir = context(
        &b,
        "ctx",
        &[(
            "Dockerfile",
            "FROM bb:1 AS builder\n\
             ARG GREETING=hello\n\
             RUN mkdir /out && echo \"$GREETING from the builder\" > /out/msg && echo generated\n\
             FROM bb:1 AS unused\n\
             RUN exit 3\n\
             FROM scratch\n\
             COPY --from=builder /bin/busybox /bin/sh\n\
             COPY --from=0 /out/ /data/\n\
             CMD [\"/bin/sh\", \"-c\", \"read m < /data/msg; echo got: $m\"]\n",
        )],
    );
    let out = build_ok(&b, &["-t", "app:1", "-t", "app:2"], &dir);
    // Classic builder output; the stage nobody needs is not built (its RUN would fail).
    assert!(out.starts_with("Step 1/"), "{out}");
    assert!(out.contains(" ---> Running in "), "{out}");
    assert!(out.contains("\ngenerated\n"), "RUN output streamed: {out}");
    assert!(!out.contains("exit 3"), "{out}");
    let id = b.image_id("app:1");
    assert!(
        out.contains(&format!("Successfully built {}", &id[7..19])),
        "{out}"
    );
    assert!(
        out.contains("Successfully tagged app:1\nSuccessfully tagged app:2\n"),
        "{out}"
    );
    assert_eq!(b.image_id("app:2"), id);
    assert_eq!(run(&b, &["app:1"]), "got: hello from the builder\n");
    // Only the final stage's layers: the builder's RUN layer is not in it.
    let cfg = config(&b, "app:1");
    assert_eq!(cfg["rootfs"]["diff_ids"].as_array().unwrap().len(), 2);
    // Intermediate images are hidden, as Docker hides them; -a shows them.
    let listed = b.ok(&["images", "-q"]);
    assert_eq!(listed.lines().count(), 2, "{listed}");
    assert!(b.ok(&["images", "-aq"]).lines().count() > 2);
    // -q prints the id only; --iidfile gets it too.
    let iid = b.tmp.path().join("iid");
    let out = build_ok(&b, &["-q", "--iidfile", iid.to_str().unwrap()], &dir);
    assert_eq!(out, format!("{id}\n"));
    assert_eq!(std::fs::read_to_string(&iid).unwrap(), id);
    // --target builds that stage (here the failing one, alone).
    let (code, out, err) = build(&b, &["--target", "unused", "-t", "u:1"], &dir);
    assert_ne!(code, 0);
    assert!(
        !out.contains("generated") && !out.contains("FROM scratch"),
        "{out}"
    );
    assert!(
        err.contains("Dockerfile:5: The command '/bin/sh -c exit 3' returned a non-zero code: 3"),
        "{err}"
    );
    b.assert_nothing_left();
}

#[test]
fn instructions_take_effect() {
    let b = Berth::with_busybox();
    let tar_dir = b.tmp.path().join("tarsrc");
    std::fs::create_dir_all(tar_dir.join("t")).unwrap();
    std::fs::write(tar_dir.join("t/inside"), "from the tar\n").unwrap();
    let tar = b.tar_of(&tar_dir, "t.tar");
    let dir = context(
        &b,
        "ctx",
        &[
            ("a.conf", "a\n"),
            ("b.conf", "b\n"),
            ("c.txt", "c\n"),
            ("tool.sh", "#!/bin/sh\necho tool\n"),
            (
                "Dockerfile",
                "FROM bb:1\n\
                 ARG FLAVOUR=plain\n\
                 ARG UNSET\n\
                 ENV APP_HOME=/srv/app MODE=${FLAVOUR}\n\
                 LABEL org.example.flavour=$FLAVOUR other=\"two words\"\n\
                 WORKDIR $APP_HOME\n\
                 WORKDIR sub\n\
                 COPY *.conf conf/\n\
                 COPY --chown=app:staff --chmod=750 tool.sh /usr/local/bin/tool\n\
                 ADD t.tar /unpacked/\n\
                 RUN echo \"mode=$MODE flavour=$FLAVOUR unset=[$UNSET]\" > /srv/app/run.txt; pwd >> /srv/app/run.txt\n\
                 RUN <<EOF\n\
                 echo heredoc line 1 > /srv/app/here.txt\n\
                 echo heredoc $MODE >> /srv/app/here.txt\n\
                 EOF\n\
                 COPY <<EOT /srv/app/note\n\
                 note for $APP_HOME\n\
                 EOT\n\
                 SHELL [\"/bin/sh\", \"-ec\"]\n\
                 RUN echo shell=$0 > /srv/app/shell.txt\n\
                 VOLUME /data\n\
                 RUN echo lost > /data/written-after-volume && echo kept > /tmp/kept\n\
                 USER app\n\
                 RUN echo uid=$(id -u)\n\
                 EXPOSE 80 53/udp\n\
                 HEALTHCHECK --interval=5s --retries=2 CMD true\n\
                 STOPSIGNAL SIGUSR1\n\
                 ONBUILD RUN echo triggered\n\
                 ENTRYPOINT [\"/bin/sh\", \"-c\"]\n\
                 CMD [\"cat /srv/app/run.txt\"]\n",
            ),
        ],
    );
    std::fs::copy(&tar, dir.join("t.tar")).unwrap();
    std::fs::set_permissions(dir.join("tool.sh"), PermissionsExt::from_mode(0o644)).unwrap();
    // Give bb:1 an app user and a staff group first.
    let base = context(
        &b,
        "base",
        &[(
            "Dockerfile",
            "FROM bb:1\nRUN echo app:x:1000:1000::/home/app:/bin/sh >> /etc/passwd && echo staff:x:50: >> /etc/group\n",
        )],
    );
    build_ok(&b, &["-t", "bb:1"], &base);
    let out = build_ok(&b, &["--build-arg", "FLAVOUR=spicy", "-t", "inst:1"], &dir);
    assert!(!out.contains("were not consumed"), "{out}");
    assert!(out.contains("\nuid=1000\n"), "RUN as USER: {out}");

    let cfg = config(&b, "inst:1");
    let c = &cfg["config"];
    let env: Vec<&str> = c["Env"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap())
        .collect();
    assert!(
        env.contains(&"APP_HOME=/srv/app") && env.contains(&"MODE=spicy"),
        "{env:?}"
    );
    assert!(
        !env.iter().any(|e| e.starts_with("FLAVOUR")),
        "ARGs are not kept: {env:?}"
    );
    assert_eq!(c["Labels"]["org.example.flavour"], "spicy");
    assert_eq!(c["Labels"]["other"], "two words");
    assert_eq!(c["WorkingDir"], "/srv/app/sub");
    assert_eq!(c["User"], "app");
    assert_eq!(c["Entrypoint"], serde_json::json!(["/bin/sh", "-c"]));
    assert_eq!(c["Cmd"], serde_json::json!(["cat /srv/app/run.txt"]));
    assert_eq!(c["Shell"], serde_json::json!(["/bin/sh", "-ec"]));
    assert_eq!(
        c["ExposedPorts"],
        serde_json::json!({"80/tcp": {}, "53/udp": {}})
    );
    assert_eq!(c["Volumes"], serde_json::json!({"/data": {}}));
    assert_eq!(c["StopSignal"], "SIGUSR1");
    assert_eq!(
        c["Healthcheck"]["Test"],
        serde_json::json!(["CMD-SHELL", "true"])
    );
    assert_eq!(c["Healthcheck"]["Interval"], 5_000_000_000u64);
    assert_eq!(c["Healthcheck"]["Retries"], 2);
    assert_eq!(c["OnBuild"], serde_json::json!(["RUN echo triggered"]));
    // History: one entry per step; metadata steps have empty layers, and each layer
    // step matches one diff_id.
    let history = cfg["history"].as_array().unwrap();
    let layers = history.iter().filter(|h| h["empty_layer"] != true).count();
    assert_eq!(layers, cfg["rootfs"]["diff_ids"].as_array().unwrap().len());
    let by: Vec<&str> = history
        .iter()
        .map(|h| h["created_by"].as_str().unwrap_or_default())
        .collect();
    assert!(by.contains(&"ENV APP_HOME=/srv/app MODE=spicy"), "{by:?}");
    let env_entry = history
        .iter()
        .find(|h| h["created_by"] == "ENV APP_HOME=/srv/app MODE=spicy")
        .unwrap();
    assert_eq!(env_entry["empty_layer"], true);
    assert!(
        by.iter()
            .any(|b| b.starts_with("|1 FLAVOUR=spicy /bin/sh -c echo")),
        "{by:?}"
    );

    // The files, seen from a container.
    let show = |cmd: &str| {
        run(
            &b,
            &["--entrypoint", "/bin/sh", "-u", "0", "inst:1", "-c", cmd],
        )
    };
    assert_eq!(
        show("cat /srv/app/run.txt"),
        "mode=spicy flavour=spicy unset=[]\n/srv/app/sub\n"
    );
    assert_eq!(
        show("cat /srv/app/sub/conf/a.conf /srv/app/sub/conf/b.conf"),
        "a\nb\n"
    );
    assert_eq!(show("ls /srv/app/sub/conf"), "a.conf\nb.conf\n");
    assert_eq!(
        show("stat -c '%u:%g %a' /usr/local/bin/tool; tool"),
        "1000:50 750\ntool\n"
    );
    assert_eq!(show("cat /unpacked/t/inside"), "from the tar\n");
    assert_eq!(
        show("cat /srv/app/here.txt"),
        "heredoc line 1\nheredoc spicy\n"
    );
    assert_eq!(show("cat /srv/app/note"), "note for /srv/app\n");
    assert_eq!(show("cat /srv/app/shell.txt"), "shell=/bin/sh\n");
    // As Docker's classic builder: a RUN's writes under a declared VOLUME are discarded,
    // with the anonymous volume that held them.
    assert_eq!(show("ls /data; cat /tmp/kept"), "kept\n");
    assert_eq!(b.ok(&["volume", "ls", "-q"]), "");
    // COPY's files belong to root unless --chown.
    assert_eq!(show("stat -c '%u:%g' /srv/app/sub/conf/a.conf"), "0:0\n");
    // The image's own command, as its user.
    assert_eq!(
        run(&b, &["inst:1"]),
        "mode=spicy flavour=spicy unset=[]\n/srv/app/sub\n"
    );

    // ONBUILD: the trigger runs in a build FROM the image, and is not inherited.
    let child = context(
        &b,
        "child",
        &[("Dockerfile", "FROM inst:1\nUSER 0\nRUN echo child\n")],
    );
    let out = build_ok(&b, &["-t", "child:1"], &child);
    assert!(out.contains("# Executing 1 build trigger\n"), "{out}");
    assert!(out.contains("\ntriggered\n"), "{out}");
    assert!(config(&b, "child:1")["config"]["OnBuild"].is_null());
    b.assert_nothing_left();
}

#[test]
fn rebuild_is_cached_and_a_changed_source_rebuilds_from_its_step() {
    let b = Berth::with_busybox();
    let dir = context(
        &b,
        "ctx",
        &[
            ("one", "1\n"),
            ("two", "2\n"),
            (
                "Dockerfile",
                "FROM bb:1\n\
                 ENV X=1\n\
                 COPY one /one\n\
                 RUN cat /one > /seen-one\n\
                 COPY two /two\n\
                 RUN cat /two > /seen-two\n\
                 CMD [\"cat\", \"/seen-one\", \"/seen-two\"]\n",
            ),
        ],
    );
    let first = build_ok(&b, &["-t", "c:1"], &dir);
    assert!(!first.contains("Using cache"), "{first}");
    let id = b.image_id("c:1");

    // Unchanged: every step after FROM is a cache hit and the image is the same.
    let again = build_ok(&b, &["-t", "c:2"], &dir);
    assert_eq!(again.matches(" ---> Using cache").count(), 6, "{again}");
    assert!(!again.contains("Running in"), "{again}");
    assert_eq!(b.image_id("c:2"), id);

    // A new mtime alone changes nothing (the cache sums content and mode).
    let f = std::fs::File::options()
        .write(true)
        .open(dir.join("two"))
        .unwrap();
    f.set_modified(std::time::SystemTime::now() + std::time::Duration::from_secs(60))
        .unwrap();
    drop(f);
    let touched = build_ok(&b, &["-t", "c:3"], &dir);
    assert_eq!(touched.matches(" ---> Using cache").count(), 6, "{touched}");

    // New content in the second source: the steps before it are cached, it and
    // everything after run again.
    std::fs::write(dir.join("two"), "TWO\n").unwrap();
    let changed = build_ok(&b, &["-t", "c:4"], &dir);
    let steps: Vec<&str> = changed.split("Step ").skip(1).collect();
    assert_eq!(steps.len(), 7, "{changed}");
    for (i, step) in steps.iter().enumerate() {
        let cached = step.contains("Using cache");
        assert_eq!(cached, (1..=3).contains(&i), "step {}: {step}", i + 1);
    }
    assert!(steps[5].contains("Running in"), "{changed}");
    assert_ne!(b.image_id("c:4"), id);
    assert_eq!(run(&b, &["c:4"]), "1\nTWO\n");
    assert_eq!(run(&b, &["c:1"]), "1\n2\n");

    // --no-cache: nothing from the cache.
    let fresh = build_ok(&b, &["--no-cache", "-t", "c:5"], &dir);
    assert!(!fresh.contains("Using cache"), "{fresh}");
    assert_eq!(run(&b, &["c:5"]), "1\nTWO\n");
    b.assert_nothing_left();
}

/// Everything a container sees of its image (not the mounts the runtime adds): each
/// node's type and mode, owner, and for non-directories size, mtime, link count, link
/// target and content. Directory mtimes are left out: the runtime's mount points change
/// some of them in every container.
const TREE_LISTING: &str = r#"
set -e
prune='( -path /proc -o -path /sys -o -path /dev -o -path /etc/hosts -o -path /etc/hostname -o -path /etc/resolv.conf -o -path /etc/mtab -o -path /.dockerenv ) -prune -o'
{
find / -mindepth 1 -xdev $prune -type d -exec stat -c 'dir %n %f %u:%g' {} +
find / -mindepth 1 -xdev $prune ! -type d -exec stat -c 'node %N %f %u:%g %s %Y %h' {} +
find / -mindepth 1 -xdev $prune -type f -exec md5sum {} +
} | sort
"#;

/// A step's upper directory becomes its layer's snapshot as the build goes (nothing is
/// unpacked from the blob the step just wrote), and a container sees the same tree from
/// those snapshots as from the layers' blobs unpacked: whiteouts, an opaque directory,
/// links, modes and owners included.
#[test]
fn built_layers_are_kept_as_snapshots_that_match_their_blobs() {
    let b = Berth::with_busybox();
    let dir = context(
        &b,
        "ctx",
        &[
            ("tree/keep", "keep\n"),
            ("tree/gone", "gone\n"),
            ("tree/sub/old", "old\n"),
            ("tree/run.sh", "#!/bin/sh\necho run\n"),
            ("last", "last\n"),
            (
                "Dockerfile",
                "FROM bb:1\n\
                 COPY tree/ /data/\n\
                 RUN rm /data/gone /bin/vi && rm -rf /data/sub && mkdir /data/sub && \
                     echo new > /data/sub/new && ln -s keep /data/link && ln /data/keep /data/hard && \
                     chmod 4755 /data/run.sh && chown 7:8 /data/keep && mkdir -p /var/empty && \
                     echo more >> /etc/group\n\
                 COPY --chmod=600 --chown=3:4 last /data/sub/\n\
                 CMD [\"sh\"]\n",
            ),
        ],
    );
    build_ok(&b, &["-t", "snap:1"], &dir);
    let cfg = config(&b, "snap:1");
    let diff_ids: Vec<image::digest::Digest> = cfg["rootfs"]["diff_ids"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d.as_str().unwrap().parse().unwrap())
        .collect();
    assert_eq!(diff_ids.len(), 4, "{cfg}");
    let chains = image::meta::chain_ids(&diff_ids);
    let snapshot = |chain: &image::digest::Digest| b.root().join("snapshots").join(chain.hex());
    // Every layer has its snapshot already, the last COPY's too, which no container of
    // the build needed (unpacking on demand would not have made it).
    for chain in &chains {
        assert!(snapshot(chain).join("done").exists(), "{chain}");
    }
    let kept = run(&b, &["snap:1", "sh", "-c", TREE_LISTING]);
    for want in [
        "node /data/sub/new 81a4 0:0 4 ",
        "node /data/sub/last 8180 3:4 5 ",
        "node /data/run.sh 89ed 0:0 ",
        "node /data/keep 81a4 7:8 5 ",
        "node '/data/link' -> 'keep' a1ff 0:0 4 ",
        "dir /var/empty 41ed 0:0",
    ] {
        assert!(kept.contains(want), "{want}\n{kept}");
    }
    for gone in ["/data/gone", "/data/sub/old", "/bin/vi "] {
        assert!(!kept.contains(gone), "{gone}\n{kept}");
    }
    // The same tree when every layer is unpacked again from its blob.
    for chain in &chains {
        std::fs::remove_dir_all(snapshot(chain)).unwrap();
    }
    let unpacked = run(&b, &["snap:1", "sh", "-c", TREE_LISTING]);
    assert!(snapshot(&chains[3]).join("done").exists());
    assert_eq!(kept, unpacked);
    b.assert_nothing_left();
}

/// The steps of a build's output, in order, and whether each came from the cache.
fn steps_cached(out: &str) -> Vec<(String, bool)> {
    out.split("Step ")
        .skip(1)
        .map(|s| {
            let first = s.lines().next().unwrap_or_default();
            (first.to_string(), s.contains(" ---> Using cache"))
        })
        .collect()
}

/// RUN --mount as BuildKit's: a cache directory that outlives builds, binds of the context
/// and of another stage, a read-write bind whose writes go nowhere, a tmpfs; none of them,
/// nor their mount points, in the image.
#[test]
fn run_mounts_cache_bind_and_tmpfs_like_buildkit() {
    let b = Berth::with_busybox();
    let dir = context(
        &b,
        "ctx",
        &[
            ("src/a.txt", "from the context\n"),
            ("src/sub/b.txt", "b\n"),
            (
                "Dockerfile",
                "FROM bb:1 AS tools\n\
                 RUN mkdir /out && echo from the stage > /out/tool.txt\n\
                 FROM bb:1\n\
                 RUN --mount=type=cache,target=/var/cache/app,id=appcache \
                     echo run >> /var/cache/app/log && wc -l < /var/cache/app/log > /runs\n\
                 RUN --mount=type=bind,target=/ctx cat /ctx/src/a.txt > /seen-ctx\n\
                 RUN --mount=type=bind,from=tools,source=/out,target=/in cat /in/tool.txt > /seen-stage\n\
                 RUN --mount=type=bind,source=src,target=/rw,rw \
                     echo scribble > /rw/a.txt && echo x > /rw/new && cat /rw/a.txt > /seen-rw\n\
                 RUN --mount=type=tmpfs,target=/scratch \
                     echo t > /scratch/t && awk '$2 == \"/scratch\" {print $3}' /proc/mounts > /seen-tmpfs\n\
                 RUN --mount=type=cache,target=/c,sharing=locked,mode=0700,uid=5 \
                     stat -c '%a %u' /c > /seen-mode && touch /c/made\n\
                 RUN --mount=type=cache,target=/seeded,from=tools,source=/out \
                     cat /seeded/tool.txt > /seen-seed\n",
            ),
        ],
    );
    let show = |image: &str| {
        run(
            &b,
            &[
                image,
                "sh",
                "-c",
                "cat /runs /seen-ctx /seen-stage /seen-rw /seen-tmpfs /seen-mode /seen-seed",
            ],
        )
    };
    build_ok(&b, &["-t", "m:1"], &dir);
    assert_eq!(
        show("m:1"),
        "1\nfrom the context\nfrom the stage\nscribble\ntmpfs\n700 5\nfrom the stage\n"
    );
    // Neither the mounts' contents nor the mount points the runtime made are in the image.
    let listed = run(
        &b,
        &[
            "m:1",
            "sh",
            "-c",
            "ls -d /var /var/cache /ctx /in /rw /scratch /c /seeded 2>/dev/null; true",
        ],
    );
    assert_eq!(listed, "");
    // The read-write bind wrote nowhere.
    assert_eq!(
        std::fs::read_to_string(dir.join("src/a.txt")).unwrap(),
        "from the context\n"
    );
    assert!(!dir.join("src/new").exists());

    // The cache survives into the next build, even without the layer cache.
    build_ok(&b, &["--no-cache", "-t", "m:2"], &dir);
    assert_eq!(run(&b, &["m:2", "cat", "/runs"]), "2\n");
    // A changed bind source reruns the step that binds it, and what follows; the cache
    // mount's content is not in any key (its step stays cached).
    std::fs::write(dir.join("src/a.txt"), "changed\n").unwrap();
    let out = build_ok(&b, &["-t", "m:3"], &dir);
    let steps = steps_cached(&out);
    let cached: Vec<bool> = steps.iter().map(|(_, c)| *c).collect();
    assert_eq!(
        cached,
        [false, true, false, true, false, false, false, false, false, false],
        "{steps:?}"
    );
    assert_eq!(
        run(&b, &["m:3", "cat", "/runs", "/seen-ctx", "/seen-rw"]),
        "2\nchanged\nscribble\n"
    );

    // builder prune removes cache mounts: the next build starts from an empty one.
    let pruned = b.ok(&["builder", "prune", "-f"]);
    assert!(
        pruned.starts_with("Deleted build cache objects: "),
        "{pruned}"
    );
    assert!(
        !b.root().join("build/cache").exists()
            || std::fs::read_dir(b.root().join("build/cache"))
                .unwrap()
                .next()
                .is_none()
    );
    build_ok(&b, &["--no-cache", "-t", "m:4"], &dir);
    assert_eq!(run(&b, &["m:4", "cat", "/runs"]), "1\n");

    // With a .dockerignore the bound context hides what it excludes, as COPY's does.
    std::fs::write(dir.join(".dockerignore"), "src/sub\n").unwrap();
    std::fs::write(
        dir.join("Dockerfile"),
        "FROM bb:1\nRUN --mount=type=bind,target=/ctx ls /ctx/src > /seen\n",
    )
    .unwrap();
    build_ok(&b, &["-t", "m:5"], &dir);
    assert_eq!(run(&b, &["m:5", "cat", "/seen"]), "a.txt\n");
    b.assert_nothing_left();
}

/// Ctrl-C (SIGINT) or SIGTERM during a RUN stops the build at once: its container and
/// step directories are gone and nothing is tagged. A build killed outright (SIGKILL)
/// cannot clean up; `builder prune` and the next build remove what it left.
#[test]
fn an_interrupted_build_leaves_nothing() {
    use std::io::BufRead;
    use std::os::unix::process::ExitStatusExt;
    let b = Berth::with_busybox();
    let dir = context(
        &b,
        "ctx",
        &[
            ("data/f", "x\n"),
            (
                "Dockerfile",
                "FROM bb:1\nRUN --mount=type=bind,source=data,target=/m,rw echo started && sleep 30\n",
            ),
        ],
    );
    let step_dirs = || -> Vec<String> {
        std::fs::read_dir(b.root().join("build"))
            .map(|d| {
                d.flatten()
                    .map(|e| e.file_name().to_string_lossy().into_owned())
                    .filter(|n| n.starts_with("step-"))
                    .collect()
            })
            .unwrap_or_default()
    };
    // Starts the build, waits for its RUN to run, sends `sig`; the status, how long the
    // build took to end after it, and its stderr.
    let interrupt = |sig: nix::sys::signal::Signal, times: usize| {
        let mut child = b
            .cmd(&["build", "-t", "int:1", dir.to_str().unwrap()])
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        let stdout = child.stdout.take().unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in std::io::BufReader::new(stdout)
                .lines()
                .map_while(Result::ok)
            {
                if line == "started" {
                    let _ = tx.send(());
                }
            }
        });
        rx.recv_timeout(std::time::Duration::from_secs(60))
            .expect("the RUN started");
        assert_eq!(step_dirs().len(), 1, "the RUN's, with the rw bind's copy");
        let pid = nix::unistd::Pid::from_raw(child.id() as i32);
        for _ in 0..times {
            nix::sys::signal::kill(pid, sig).unwrap();
        }
        let sent = std::time::Instant::now();
        let out = child.wait_with_output().unwrap();
        (
            out.status,
            sent.elapsed(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    for (sig, code) in [
        (nix::sys::signal::Signal::SIGINT, 130),
        (nix::sys::signal::Signal::SIGTERM, 143),
    ] {
        let (status, took, err) = interrupt(sig, 1);
        assert_eq!(status.code(), Some(code), "{sig}: {err}");
        assert_eq!(err, "Error: the build was interrupted\n");
        assert!(
            took < std::time::Duration::from_secs(15),
            "{sig}: the RUN was stopped, not waited for ({took:?})"
        );
        assert_eq!(step_dirs(), Vec::<String>::new(), "{sig}");
        assert_ne!(
            b.code(&["image", "inspect", "int:1"]).0,
            0,
            "nothing tagged"
        );
        b.assert_nothing_left();
    }

    // A second Ctrl-C ends berth at once (what is left then is the cleaner's).
    let (status, took, _) = interrupt(nix::sys::signal::Signal::SIGINT, 2);
    assert_eq!(status.code(), Some(130));
    assert!(took < std::time::Duration::from_secs(15), "{took:?}");
    b.ok(&["builder", "prune", "-f"]);
    assert_eq!(step_dirs(), Vec::<String>::new());
    b.assert_nothing_left();

    // SIGKILL: the step directory stays, and the RUN container (still running).
    let (status, _, _) = interrupt(nix::sys::signal::Signal::SIGKILL, 1);
    assert_eq!(status.signal(), Some(libc::SIGKILL));
    assert_eq!(step_dirs().len(), 1);
    assert_eq!(b.ok(&["ps", "-aq"]).lines().count(), 1);
    b.ok(&["builder", "prune", "-f"]);
    assert_eq!(step_dirs(), Vec::<String>::new());
    b.assert_nothing_left();
    // The next build cleans up too (and a live build's directories are not touched: the
    // cleaner takes only unlocked ones, which its own RUN below relies on).
    interrupt(nix::sys::signal::Signal::SIGKILL, 1);
    assert_eq!(step_dirs().len(), 1);
    std::fs::write(dir.join("Dockerfile"), "FROM bb:1\nRUN echo next\n").unwrap();
    build_ok(&b, &["-t", "next:1"], &dir);
    assert_eq!(step_dirs(), Vec::<String>::new());
    b.assert_nothing_left();
}

#[test]
fn dockerignore_leaves_files_out_of_the_context() {
    let b = Berth::with_busybox();
    let dir = context(
        &b,
        "ctx",
        &[
            (".dockerignore", "secret*\n**/*.log\n!keep.log\n"),
            ("secret.txt", "s\n"),
            ("app/main", "m\n"),
            ("app/debug.log", "d\n"),
            ("keep.log", "k\n"),
            ("Dockerfile", "FROM bb:1\nCOPY . /ctx/\n"),
        ],
    );
    build_ok(&b, &["-t", "ign:1"], &dir);
    let files = run(&b, &["ign:1", "find", "/ctx", "-type", "f"]);
    let mut files: Vec<&str> = files.lines().collect();
    files.sort();
    assert_eq!(
        files,
        [
            "/ctx/.dockerignore",
            "/ctx/Dockerfile",
            "/ctx/app/main",
            "/ctx/keep.log"
        ]
    );
    // An ignored file cannot be named either.
    std::fs::write(dir.join("Dockerfile"), "FROM bb:1\nCOPY secret.txt /\n").unwrap();
    let (code, _, err) = build(&b, &[], &dir);
    assert_ne!(code, 0);
    assert!(
        err.contains("Dockerfile:2: \"secret.txt\": not found"),
        "{err}"
    );
    b.assert_nothing_left();
}

#[test]
fn run_networking_is_the_default_bridge_or_none() {
    let b = Berth::with_busybox();
    let dir = context(
        &b,
        "ctx",
        &[(
            "Dockerfile",
            "FROM bb:1\n\
             RUN --network=none ls /sys/class/net > /none.txt\n\
             RUN ls /sys/class/net > /default.txt\n",
        )],
    );
    build_ok(&b, &["-t", "net:1"], &dir);
    assert_eq!(run(&b, &["net:1", "cat", "/none.txt"]), "lo\n");
    let default = run(&b, &["net:1", "cat", "/default.txt"]);
    assert!(default.lines().any(|l| l == "eth0"), "{default}");
    b.assert_nothing_left();
}

#[test]
fn bad_input_fails_with_the_line_and_tags_nothing() {
    let b = Berth::with_busybox();
    let outside = b.tmp.path().join("outside.txt");
    std::fs::write(&outside, "host secret\n").unwrap();
    let cases: &[(&str, &str)] = &[
        (
            "FROM bb:1\nFROBNICATE x\n",
            "Dockerfile:2: unknown instruction: FROBNICATE",
        ),
        (
            "FROM bb:1\nRUN <<EOF\necho\n",
            "Dockerfile:2: unterminated heredoc: EOF",
        ),
        (
            "FROM bb:1\nENV A=\"open\n",
            "Dockerfile:2: unterminated quote",
        ),
        (
            "FROM bb:1\nCOPY ../outside.txt /x\n",
            "Dockerfile:2: forbidden path outside the build context: ../outside.txt",
        ),
        (
            "FROM bb:1\nCOPY link /x\n",
            "Dockerfile:2: forbidden path outside the build context: link",
        ),
        (
            "FROM bb:1\nCOPY dirlink/outside.txt /x\n",
            "Dockerfile:2: forbidden path outside the build context: dirlink/outside.txt",
        ),
        (
            "FROM bb:1\nCOPY --from=nosuchstage /x /x\n",
            "Dockerfile:2: invalid from flag value nosuchstage",
        ),
        (
            "FROM bb:1\nRUN true\nRUN false\n",
            "Dockerfile:3: The command '/bin/sh -c false' returned a non-zero code: 1",
        ),
        (
            "FROM nosuchimage:1\n",
            "Dockerfile:1: nosuchimage:1: not in the store",
        ),
    ];
    for (i, (dockerfile, expected)) in cases.iter().enumerate() {
        let dir = context(&b, &format!("bad{i}"), &[("Dockerfile", dockerfile)]);
        std::os::unix::fs::symlink(&outside, dir.join("link")).unwrap();
        std::os::unix::fs::symlink("../", dir.join("dirlink")).unwrap();
        let tag = format!("bad:{i}");
        let (code, out, err) = build(&b, &["-t", &tag], &dir);
        assert_eq!(code, 1, "{dockerfile}: {out}{err}");
        assert!(err.contains(expected), "{dockerfile}: {err}");
        assert_eq!(err.lines().count(), 1, "{err}");
        assert!(
            b.code(&["image", "inspect", &tag]).0 != 0,
            "{tag} was tagged"
        );
        assert!(!out.contains("host secret"));
    }
    b.assert_nothing_left();
    // Nothing of a step is left in the store's build directory either.
    let left: Vec<_> = std::fs::read_dir(b.root().join("build"))
        .map(|d| d.flatten().map(|e| e.file_name()).collect())
        .unwrap_or_default();
    assert!(left.is_empty(), "{left:?}");
}

/// A Dockerfile on stdin, with an ARG before FROM choosing the base image.
#[test]
fn dockerfile_from_stdin_without_context() {
    let b = Berth::with_busybox();
    let (code, err) = build_stdin(
        &b,
        &["--build-arg", "BASE=bb:1", "-t", "stdin:1"],
        b"ARG BASE=nothing:here\nFROM $BASE\nRUN echo from-stdin > /f\n",
    );
    assert_eq!(code, 0, "{err}");
    assert_eq!(run(&b, &["stdin:1", "cat", "/f"]), "from-stdin\n");
}

/// Runs `berth build ARGS -` with `input` on stdin; returns the exit code and stderr.
fn build_stdin(b: &Berth, args: &[&str], input: &[u8]) -> (i32, String) {
    use std::io::Write;
    let mut all = vec!["build"];
    all.extend(args);
    all.push("-");
    let mut child = b
        .cmd(&all)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    stdin.write_all(input).unwrap();
    drop(stdin);
    let o = child.wait_with_output().unwrap();
    (
        o.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&o.stderr).into_owned(),
    )
}

/// `tar -c` of `dir`'s contents, with `flag` picking the compression (`-z`, `-j`, `-J`,
/// `--zstd`, or "" for none); the archive's bytes.
fn tar_with(dir: &Path, flag: &str) -> Vec<u8> {
    let mut args = vec!["-C", dir.to_str().unwrap()];
    if !flag.is_empty() {
        args.push(flag);
    }
    args.extend(["-cf", "-", "."]);
    let out = std::process::Command::new("tar")
        .args(&args)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    out.stdout
}

/// A context sent as a tar on stdin (`docker build - < ctx.tar`), compressed or not, with
/// the Dockerfile found inside it; the unpacked context goes with the build.
#[test]
fn a_tar_context_comes_on_stdin() {
    let b = Berth::with_busybox();
    let dir = context(
        &b,
        "ctx",
        &[
            ("Dockerfile", "FROM bb:1\nCOPY data/ /data/\n"),
            ("alt/Dockerfile.two", "FROM bb:1\nCOPY data/f /two\n"),
            ("data/f", "in the tar\n"),
        ],
    );
    for flag in ["", "-z", "-J", "--zstd"] {
        let (code, err) = build_stdin(&b, &["-t", "tarctx:1"], &tar_with(&dir, flag));
        assert_eq!(code, 0, "{flag}: {err}");
        assert_eq!(
            run(&b, &["tarctx:1", "cat", "/data/f"]),
            "in the tar\n",
            "{flag}"
        );
    }
    let (code, err) = build_stdin(
        &b,
        &["-f", "alt/Dockerfile.two", "-t", "tarctx:2"],
        &tar_with(&dir, "-j"),
    );
    assert_eq!(code, 0, "{err}");
    assert_eq!(run(&b, &["tarctx:2", "cat", "/two"]), "in the tar\n");
    let (code, err) = build_stdin(&b, &["-f", "../../etc/passwd"], &tar_with(&dir, "-z"));
    assert_ne!(code, 0);
    assert!(err.contains("unable to read the Dockerfile"), "{err}");
    let left: Vec<_> = std::fs::read_dir(b.root().join("build"))
        .unwrap()
        .flatten()
        .map(|e| e.file_name())
        .filter(|n| n.to_string_lossy().starts_with("step-"))
        .collect();
    assert!(left.is_empty(), "{left:?}");
    b.assert_nothing_left();
}

/// ADD unpacks tars in every compression Docker knows, and copies a compressed file that
/// holds no tar as it is; COPY --exclude leaves files out (patterns as .dockerignore's,
/// from the source directory: `*.md` only at its top), COPY --parents keeps paths.
#[test]
fn add_archives_and_copy_exclude_and_parents() {
    let b = Berth::with_busybox();
    let src = b.tmp.path().join("tarsrc");
    std::fs::create_dir_all(src.join("t")).unwrap();
    std::fs::write(src.join("t/inside"), "unpacked\n").unwrap();
    let dir = context(
        &b,
        "ctx",
        &[
            ("note.txt", "just text\n"),
            ("app/main.c", "int main;\n"),
            ("app/README.md", "docs\n"),
            ("app/sub/x.md", "deep docs\n"),
            ("app/sub/y.c", "y\n"),
            ("home.txt", "home txt\n"),
            ("homedir/keep", "keep\n"),
            ("a/b/c.txt", "c\n"),
            ("a/b/d.txt", "d\n"),
            (
                "Dockerfile",
                "FROM bb:1\n\
                 ADD t.tar.xz /xz/\n\
                 ADD t.tar.bz2 /bz2/\n\
                 ADD t.tar.zst /zst/\n\
                 ADD note.txt.gz /gz/\n\
                 COPY --exclude=*.md --exclude=sub/*.c app/ /app/\n\
                 COPY --exclude=*.txt hom* /home/\n\
                 COPY --parents a/b/c.txt /p1/\n\
                 COPY --parents ./a/./b/*.txt /p2/\n",
            ),
        ],
    );
    for (flag, name) in [
        ("-J", "t.tar.xz"),
        ("-j", "t.tar.bz2"),
        ("--zstd", "t.tar.zst"),
    ] {
        std::fs::write(dir.join(name), tar_with(&src, flag)).unwrap();
    }
    let gz = std::process::Command::new("gzip")
        .args(["-c", dir.join("note.txt").to_str().unwrap()])
        .output()
        .unwrap();
    std::fs::write(dir.join("note.txt.gz"), gz.stdout).unwrap();
    let out = build_ok(&b, &["-t", "arch:1"], &dir);
    let files = run(
        &b,
        &[
            "arch:1",
            "sh",
            "-c",
            "cd / && find xz bz2 zst gz app home p1 p2 -type f | sort",
        ],
    );
    assert_eq!(
        files,
        "app/main.c\napp/sub/x.md\nbz2/t/inside\ngz/note.txt.gz\nhome/keep\n\
         p1/a/b/c.txt\np2/b/c.txt\np2/b/d.txt\nxz/t/inside\nzst/t/inside\n",
        "{out}"
    );
    assert_eq!(run(&b, &["arch:1", "cat", "/zst/t/inside"]), "unpacked\n");
    let cfg = config(&b, "arch:1");
    let by: Vec<&str> = cfg["history"]
        .as_array()
        .unwrap()
        .iter()
        .map(|h| h["created_by"].as_str().unwrap_or_default())
        .collect();
    assert!(
        by.contains(&"COPY --exclude=*.md --exclude=sub/*.c app/ /app/"),
        "{by:?}"
    );
    // An excluded file's change is not a change of the step.
    std::fs::write(dir.join("app/README.md"), "other docs\n").unwrap();
    let again = build_ok(&b, &["-t", "arch:2"], &dir);
    assert!(
        steps_cached(&again)
            .iter()
            .skip(1)
            .all(|(_, cached)| *cached),
        "{again}"
    );
    assert_eq!(b.image_id("arch:2"), b.image_id("arch:1"));
    b.assert_nothing_left();
}

/// COPY --link: the layer is made in an empty tree (a symlink the parent has on the
/// destination path is not followed) and does not depend on the parent: when an earlier
/// step changes, the linked layer is put on the new parent as it is, without copying.
#[test]
fn copy_link_makes_a_layer_independent_of_its_parent() {
    let b = Berth::with_busybox();
    let dir = context(
        &b,
        "ctx",
        &[
            ("base.txt", "one\n"),
            ("app/f", "linked\n"),
            (
                "Dockerfile",
                "FROM bb:1\nCOPY base.txt /base.txt\nRUN ln -s /tmp /app\nCOPY --link app/ /app/\n",
            ),
        ],
    );
    let last_diff = |name: &str| {
        config(&b, name)["rootfs"]["diff_ids"]
            .as_array()
            .unwrap()
            .last()
            .unwrap()
            .clone()
    };
    build_ok(&b, &["-t", "link:1"], &dir);
    assert_eq!(
        run(
            &b,
            &[
                "link:1",
                "sh",
                "-c",
                "test -d /app && test ! -L /app && cat /app/f; ls /tmp"
            ]
        ),
        "linked\n"
    );
    std::fs::write(dir.join("base.txt"), "two\n").unwrap();
    let out = build_ok(&b, &["-t", "link:2"], &dir);
    let steps: Vec<&str> = out.split("Step ").collect();
    assert!(
        steps[4].contains(" ---> Using cache (linked layer)"),
        "the linked step: {out}"
    );
    assert!(
        steps[3].contains("Running in"),
        "the RUN after the change: {out}"
    );
    assert_eq!(last_diff("link:2"), last_diff("link:1"));
    assert_ne!(b.image_id("link:2"), b.image_id("link:1"));
    assert_eq!(
        run(&b, &["link:2", "cat", "/base.txt", "/app/f"]),
        "two\nlinked\n"
    );
    b.assert_nothing_left();
}

/// Interop both ways: an image `podman build` made (podman save → berth load) runs under
/// berth, and one berth built, pushed to a registry, runs under podman.
#[test]
fn builds_cross_over_with_podman() {
    let reg = Registry::start();
    let b = Berth::with_busybox();
    let podman = |args: &[&str]| {
        let o = std::process::Command::new("podman")
            .arg("--root")
            .arg(b.tmp.path().join("p-root"))
            .arg("--runroot")
            .arg(b.tmp.path().join("p-run"))
            .args(["--storage-driver", "vfs"])
            .args(args)
            .stdin(std::process::Stdio::null())
            .output()
            .unwrap();
        assert!(
            o.status.success(),
            "podman {args:?}: {}",
            String::from_utf8_lossy(&o.stderr)
        );
        String::from_utf8(o.stdout).unwrap()
    };
    // podman's build, with a base made from the same busybox tree.
    podman(&[
        "import",
        "-q",
        b.tmp.path().join("bb.tar").to_str().unwrap(),
        "localhost/pbase:1",
    ]);
    let pctx = context(
        &b,
        "pctx",
        &[
            ("msg", "podman copied this\n"),
            (
                "Dockerfile",
                "FROM localhost/pbase:1\nCOPY msg /msg\nRUN echo podman ran this >> /msg\nCMD [\"cat\", \"/msg\"]\n",
            ),
        ],
    );
    podman(&[
        "build",
        "-q",
        "--network=none",
        "-t",
        "localhost/from-podman:1",
        pctx.to_str().unwrap(),
    ]);
    let archive = b.tmp.path().join("from-podman.tar");
    podman(&[
        "save",
        "--format",
        "docker-archive",
        "-o",
        archive.to_str().unwrap(),
        "localhost/from-podman:1",
    ]);
    b.ok(&["load", "-i", archive.to_str().unwrap()]);
    assert_eq!(
        run(&b, &["localhost/from-podman:1"]),
        "podman copied this\npodman ran this\n"
    );
    // And one built FROM it by berth.
    let ctx = context(
        &b,
        "ctx",
        &[(
            "Dockerfile",
            "FROM localhost/from-podman:1\nRUN echo berth ran this >> /msg\n",
        )],
    );
    let dest = format!("{}/built/by-berth:1", reg.host());
    build_ok(&b, &["-t", &dest], &ctx);
    b.ok(&["push", &dest]);
    let out = podman(&["run", "--rm", "--network=none", "--tls-verify=false", &dest]);
    assert_eq!(out, "podman copied this\npodman ran this\nberth ran this\n");
    b.assert_nothing_left();
}

/// `--pull` fetches the base even when the store has one by that name (and the build
/// then uses the registry's); without it the stored one is used. `--label` lands in the
/// config beside the Dockerfile's; `--platform` takes the host's and refuses others.
#[test]
fn pull_label_and_platform_flags() {
    let reg = Registry::start();
    let b = Berth::with_busybox();
    let base = format!("{}/flags/base:1", reg.host());
    // The registry gets "two" under the name; the store keeps "one" under it.
    let two = context(
        &b,
        "two",
        &[("Dockerfile", "FROM bb:1\nRUN echo two > /v\n")],
    );
    build_ok(&b, &["-q", "-t", &base], &two);
    b.ok(&["push", "-q", &base]);
    let one = context(
        &b,
        "one",
        &[("Dockerfile", "FROM bb:1\nRUN echo one > /v\n")],
    );
    build_ok(&b, &["-q", "-t", &base], &one);

    let ctx = context(
        &b,
        "app",
        &[(
            "Dockerfile",
            &format!("FROM {base}\nLABEL from=file\nCMD [\"cat\", \"/v\"]\n"),
        )],
    );
    build_ok(&b, &["-q", "-t", "app:local", "--label", "team=core"], &ctx);
    assert_eq!(run(&b, &["app:local"]), "one\n");
    let labels = &config(&b, "app:local")["config"]["Labels"];
    assert_eq!(labels["team"], "core", "{labels}");
    assert_eq!(labels["from"], "file", "{labels}");

    build_ok(&b, &["-q", "-t", "app:pulled", "--pull"], &ctx);
    assert_eq!(run(&b, &["app:pulled"]), "two\n");
    // The store's name now means the registry's image, as after `docker build --pull`.
    assert_eq!(run(&b, &[&base, "cat", "/v"]), "two\n");

    let host = format!(
        "linux/{}",
        std::env::consts::ARCH.replace("x86_64", "amd64")
    );
    build_ok(&b, &["-q", "-t", "app:host", "--platform", &host], &ctx);
    let foreign = if host == "linux/s390x" {
        "linux/amd64"
    } else {
        "linux/s390x"
    };
    let (code, out, err) = build(&b, &["-t", "app:foreign", "--platform", foreign], &ctx);
    assert_ne!(code, 0, "{out}");
    assert!(
        err.contains(&format!("platform {foreign}: only the host platform"))
            && err.lines().count() == 1,
        "{err}"
    );
    let (code, _, _) = b.code(&["image", "inspect", "app:foreign"]);
    assert_ne!(code, 0, "a refused build tags nothing");
    b.assert_nothing_left();
}

/// The predefined proxy args reach RUN without an ARG and stay out of the image (history
/// and env), as Docker keeps them; other unused build args are warned about. The
/// `# escape` directive changes the continuation character.
#[test]
fn proxy_args_and_the_escape_directive() {
    let b = Berth::with_busybox();
    let ctx = context(
        &b,
        "ctx",
        &[(
            "Dockerfile",
            "# escape=`\nFROM bb:1\nRUN echo \"$HTTP_PROXY\" > /proxy && `\n    echo \"[$no_proxy]\" >> /proxy\n",
        )],
    );
    let out = build_ok(
        &b,
        &[
            "-t",
            "proxied:1",
            "--build-arg",
            "HTTP_PROXY=http://127.0.0.1:3128",
            "--build-arg",
            "UNUSED=1",
        ],
        &ctx,
    );
    assert!(
        out.contains("[Warning] One or more build-args [UNUSED] were not consumed"),
        "{out}"
    );
    assert_eq!(
        run(&b, &["proxied:1", "cat", "/proxy"]),
        "http://127.0.0.1:3128\n[]\n"
    );
    let cfg = config(&b, "proxied:1");
    let text = cfg.to_string();
    assert!(!text.contains("3128"), "the proxy is in the image: {text}");
    assert!(
        text.contains("echo \\\"$HTTP_PROXY\\\" > /proxy &&"),
        "{text}"
    );
}
