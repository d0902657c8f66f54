//! `berth` image commands on a real store in a temporary --root.

use std::process::Command;

mod support;

use support::Berth;

fn lines(s: &str) -> Vec<&str> {
    s.lines().collect()
}

#[test]
fn import_list_tag_history_inspect_rmi() {
    let b = Berth::new();
    let tar = b.rootfs_tar();
    let id = b.ok(&[
        "import",
        "-c",
        "CMD [\"/bin/sh\"]",
        "-c",
        "ENV A=1",
        tar.to_str().unwrap(),
        "bb:1",
    ]);
    assert!(id.trim().starts_with("sha256:"), "{id}");
    let out = b.ok(&["images"]);
    let l = lines(&out);
    assert_eq!(l.len(), 2, "{out}");
    assert!(l[0].starts_with("REPOSITORY") && l[0].contains("IMAGE ID") && l[0].contains("SIZE"));
    assert!(
        l[1].starts_with("bb ") && l[1].contains(&id.trim()[7..19]),
        "{out}"
    );

    b.ok(&["tag", "bb:1", "localhost:5000/team/bb:2"]);
    let out = b.ok(&["images", "--format", "{{.Repository}}:{{.Tag}}"]);
    let mut got = lines(&out);
    got.sort();
    assert_eq!(got, ["bb:1", "localhost:5000/team/bb:2"]);
    assert_eq!(
        lines(&b.ok(&["images", "-q"])).len(),
        1,
        "one image, two tags"
    );
    let out = b.ok(&[
        "images",
        "--filter",
        "reference=localhost*/*/*",
        "--format",
        "{{.Tag}}",
    ]);
    assert_eq!(out.trim(), "2");

    let v: serde_json::Value = serde_json::from_str(&b.ok(&["image", "inspect", "bb:1"])).unwrap();
    assert_eq!(v[0]["Id"], id.trim());
    assert_eq!(v[0]["Config"]["Cmd"], serde_json::json!(["/bin/sh"]));
    assert_eq!(v[0]["Config"]["Env"], serde_json::json!(["A=1"]));
    assert_eq!(v[0]["RootFS"]["Layers"].as_array().unwrap().len(), 1);
    assert_eq!(
        b.ok(&["image", "inspect", "-f", "{{.Os}}", "bb:1"]).trim(),
        "linux"
    );

    let hist = b.ok(&["history", "bb:1"]);
    assert!(hist.contains("Imported from"), "{hist}");

    assert_eq!(b.ok(&["rmi", "bb:1"]).trim(), "Untagged: bb:1");
    assert!(b.blobs() > 0, "the image is still tagged once");
    let out = b.ok(&["rmi", "localhost:5000/team/bb:2"]);
    assert!(out.contains(&format!("Deleted: {}", id.trim())), "{out}");
    assert_eq!(b.blobs(), 0, "removing the last tag frees every blob");
    assert_eq!(lines(&b.ok(&["images"])).len(), 1);
}

#[test]
fn import_from_stdin_and_prune() {
    let b = Berth::new();
    let tar = b.rootfs_tar();
    let o = Command::new(env!("CARGO_BIN_EXE_berth"))
        .arg("--root")
        .arg(b.root())
        .args(["import", "-"])
        .stdin(std::fs::File::open(&tar).unwrap())
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let out = b.ok(&["images"]);
    assert!(
        out.contains("<none>"),
        "an untagged import is listed as <none>: {out}"
    );
    assert_eq!(
        b.ok(&["images", "--filter", "dangling=true", "-q"])
            .lines()
            .count(),
        1
    );
    let out = b.ok(&["image", "prune", "-f"]);
    assert!(out.contains("Total reclaimed space"), "{out}");
    assert_eq!(b.ok(&["images", "-q"]), "");
    assert_eq!(b.blobs(), 0);
}

#[test]
fn bad_input_is_one_clear_line() {
    let b = Berth::new();
    let tar = b.rootfs_tar();
    let cases: &[(&[&str], &str, i32)] = &[
        (&["rmi", "nosuch:1"], "nosuch", 1),
        (&["image", "inspect", "nosuch"], "No such image: nosuch", 1),
        (&["tag", "nosuch", "x:1"], "No such image: nosuch", 1),
        (
            &["import", tar.to_str().unwrap(), "Upper:1"],
            "must be lowercase",
            1,
        ),
        (
            &["import", "-c", "FROB x", tar.to_str().unwrap()],
            "FROB is not a valid change command",
            1,
        ),
        (&["import", "/nonexistent.tar"], "/nonexistent.tar", 1),
        (&["import", "/etc/hostname"], "not a tar archive", 1),
        (
            &["images", "--filter", "bogus=1"],
            "invalid filter 'bogus'",
            1,
        ),
        (&["images", "--bogus"], "--bogus", 125),
    ];
    for (args, want, code) in cases {
        let o = b.run(args);
        let err = String::from_utf8_lossy(&o.stderr);
        assert_eq!(o.status.code(), Some(*code), "{args:?}: {err}");
        assert!(err.contains(want), "{args:?}: {err}");
    }
    assert_eq!(b.blobs(), 0, "failed imports leave no blobs");
    let ingest = b.root().join("blobs/ingest");
    assert_eq!(
        std::fs::read_dir(&ingest).map(|d| d.count()).unwrap_or(0),
        0
    );
    b.ok(&["import", tar.to_str().unwrap(), "bb:1"]);
    let o = b.run(&["images", "--format", "{{.Nope}}"]);
    assert_eq!(o.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&o.stderr).contains("can't evaluate field Nope"));
}

/// berth save → podman load → podman save → berth load: the image survives the round trip
/// with its name and id, in both archive formats.
#[test]
fn save_and_load_round_trip_through_podman() {
    let b = Berth::new();
    let tar = b.rootfs_tar();
    let id = b.ok(&["import", tar.to_str().unwrap(), "localhost/rt:1"]);
    let id = id.trim();
    let podman = |args: &[&str]| {
        let o = Command::new("podman")
            .arg("--root")
            .arg(b.tmp.path().join("p-root"))
            .arg("--runroot")
            .arg(b.tmp.path().join("p-run"))
            .args(["--storage-driver", "vfs"])
            .args(args)
            .output()
            .unwrap();
        assert!(
            o.status.success(),
            "podman {args:?}: {}",
            String::from_utf8_lossy(&o.stderr)
        );
        String::from_utf8(o.stdout).unwrap()
    };
    for format in ["docker-archive", "oci-archive"] {
        let out = b.tmp.path().join(format!("berth-{format}.tar"));
        b.ok(&[
            "save",
            "--format",
            format,
            "-o",
            out.to_str().unwrap(),
            "localhost/rt:1",
        ]);
        podman(&["load", "-q", "-i", out.to_str().unwrap()]);
        let pid = podman(&["image", "inspect", "--format", "{{.Id}}", "localhost/rt:1"]);
        assert_eq!(
            format!("sha256:{}", pid.trim()),
            id,
            "{format}: podman sees another image"
        );
        let back = b.tmp.path().join(format!("podman-{format}.tar"));
        podman(&[
            "save",
            "--format",
            format,
            "-o",
            back.to_str().unwrap(),
            "localhost/rt:1",
        ]);
        podman(&["rmi", "localhost/rt:1"]);
        let fresh = Berth::new();
        let out = fresh.ok(&["load", "-i", back.to_str().unwrap()]);
        assert_eq!(out.trim(), "Loaded image: localhost/rt:1", "{format}");
        let v: serde_json::Value =
            serde_json::from_str(&fresh.ok(&["image", "inspect", "localhost/rt:1"])).unwrap();
        assert_eq!(v[0]["Id"], id, "{format}");
    }
}

#[test]
fn hostile_or_broken_archives_are_refused_and_leave_nothing() {
    let b = Berth::new();
    let dir = b.tmp.path();
    // manifest.json pointing outside the archive.
    let evil = dir.join("evil.tar");
    {
        let mut t = tar::Builder::new(std::fs::File::create(&evil).unwrap());
        let mut add = |name: &str, data: &[u8]| {
            let mut h = tar::Header::new_gnu();
            h.set_size(data.len() as u64);
            h.set_mode(0o644);
            h.set_cksum();
            t.append_data(&mut h, name, data).unwrap();
        };
        add("c.json", br#"{"architecture":"amd64","os":"linux","rootfs":{"type":"layers","diff_ids":["sha256:2c8bb7df6a2811a19e286550e3662f1ab21ed5e7cd138a88b9e5a8b590e62517"]}}"#);
        add(
            "manifest.json",
            br#"[{"Config":"c.json","RepoTags":["evil:1"],"Layers":["../../etc/passwd"]}]"#,
        );
        t.finish().unwrap();
    }
    let truncated = dir.join("truncated.tar");
    let tar_in = b.rootfs_tar();
    let id = b.ok(&["import", tar_in.to_str().unwrap(), "ok:1"]);
    let good = dir.join("good.tar");
    b.ok(&["save", "-o", good.to_str().unwrap(), "ok:1"]);
    let bytes = std::fs::read(&good).unwrap();
    std::fs::write(&truncated, &bytes[..bytes.len() / 2]).unwrap();
    let fresh = Berth::new();
    for (f, want) in [(&evil, "../../etc/passwd"), (&truncated, "")] {
        let o = fresh.run(&["load", "-i", f.to_str().unwrap()]);
        let err = String::from_utf8_lossy(&o.stderr);
        assert_eq!(o.status.code(), Some(1), "{err}");
        assert!(err.starts_with("Error: ") && err.contains(want), "{err}");
        assert_eq!(err.trim().lines().count(), 1, "one line: {err}");
    }
    assert_eq!(fresh.blobs(), 0, "a failed load leaves no blobs");
    assert!(fresh.ok(&["images", "-q"]).is_empty());
    let _ = id;
}

#[test]
fn system_df_counts_shared_layers_once() {
    let b = Berth::new();
    let tar = b.rootfs_tar();
    b.ok(&["import", tar.to_str().unwrap(), "a:1"]);
    b.ok(&["tag", "a:1", "b:1"]);
    let out = b.ok(&["system", "df"]);
    let l: Vec<&str> = out.lines().collect();
    assert!(
        l[0].starts_with("TYPE") && l[0].contains("TOTAL") && l[0].contains("RECLAIMABLE"),
        "{out}"
    );
    let images: Vec<&str> = l[1].split_whitespace().collect();
    assert_eq!(&images[..3], ["Images", "1", "0"], "{out}");
    assert!(
        images[4].ends_with("(100%)") || images[5] == "(100%)",
        "{out}"
    );
}
