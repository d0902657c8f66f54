use super::*;

/// The single instruction of the first stage after `FROM scratch`.
fn one(body: &str) -> Instruction {
    let df = parse(&format!("FROM scratch\n{body}")).unwrap_or_else(|e| panic!("{body:?}: {e}"));
    assert_eq!(df.stages[0].steps.len(), 1, "{body:?}");
    df.stages[0].steps[0].instruction.clone()
}

fn err(text: &str) -> String {
    parse(text).unwrap_err().to_string()
}

fn s(v: &str) -> String {
    v.to_string()
}

fn strings(v: &[&str]) -> Vec<String> {
    v.iter().map(|x| x.to_string()).collect()
}

fn pairs(v: &[(&str, &str)]) -> Vec<(String, String)> {
    v.iter().map(|(k, x)| (s(k), s(x))).collect()
}

fn run(command: Command) -> Run {
    Run {
        command,
        mounts: vec![],
        network: None,
        security: None,
        heredocs: vec![],
    }
}

fn copy(sources: &[&str], dest: &str) -> Copy {
    Copy {
        sources: strings(sources),
        dest: s(dest),
        from: None,
        chown: None,
        chmod: None,
        link: false,
        parents: false,
        exclude: vec![],
        heredocs: vec![],
    }
}

fn add(sources: &[&str], dest: &str) -> Add {
    Add {
        sources: strings(sources),
        dest: s(dest),
        chown: None,
        chmod: None,
        link: false,
        keep_git_dir: false,
        checksum: None,
        exclude: vec![],
        heredocs: vec![],
    }
}

fn heredoc(name: &str, content: &str, expand: bool, strip_tabs: bool) -> Heredoc {
    Heredoc {
        name: s(name),
        content: s(content),
        expand,
        strip_tabs,
    }
}

fn shell(text: &str) -> Command {
    Command::Shell(s(text))
}

fn exec(args: &[&str]) -> Command {
    Command::Exec(strings(args))
}

#[test]
fn instruction_table() {
    let cases: Vec<(&str, Instruction)> = vec![
        ("RUN make all", Instruction::Run(run(shell("make all")))),
        ("run  make   all ", Instruction::Run(run(shell("make   all")))),
        ("RUN [\"make\", \"all\"]", Instruction::Run(run(exec(&["make", "all"])))),
        ("RUN []", Instruction::Run(run(exec(&[])))),
        // Not valid JSON (single quotes, trailing text, non-strings): shell form.
        ("RUN ['make']", Instruction::Run(run(shell("['make']")))),
        ("RUN [\"a\"] b", Instruction::Run(run(shell("[\"a\"] b")))),
        ("RUN [\"a\", 1]", Instruction::Run(run(shell("[\"a\", 1]")))),
        ("RUN echo $HOME", Instruction::Run(run(shell("echo $HOME")))),
        (
            "RUN --network=none --security=insecure true",
            Instruction::Run(Run {
                network: Some(Network::None),
                security: Some(s("insecure")),
                ..run(shell("true"))
            }),
        ),
        (
            "RUN --mount=type=cache,target=/root/.cache,id=pip,sharing=locked --mount=type=bind,source=.,target=/src,rw pip install",
            Instruction::Run(Run {
                mounts: vec![
                    Mount {
                        kind: MountKind::Cache,
                        target: Some(s("/root/.cache")),
                        source: None,
                        from: None,
                        id: Some(s("pip")),
                        readonly: false,
                        sharing: Some(s("locked")),
                        options: vec![],
                    },
                    Mount {
                        kind: MountKind::Bind,
                        target: Some(s("/src")),
                        source: Some(s(".")),
                        from: None,
                        id: None,
                        readonly: false,
                        sharing: None,
                        options: vec![],
                    },
                ],
                ..run(shell("pip install"))
            }),
        ),
        (
            "RUN --mount=target=/m,from=builder,mode=0755 ls",
            Instruction::Run(Run {
                mounts: vec![Mount {
                    kind: MountKind::Bind,
                    target: Some(s("/m")),
                    source: None,
                    from: Some(s("builder")),
                    id: None,
                    readonly: true,
                    sharing: None,
                    options: vec![(s("mode"), s("0755"))],
                }],
                ..run(shell("ls"))
            }),
        ),
        ("CMD echo hi", Instruction::Cmd(shell("echo hi"))),
        ("CMD [\"nginx\", \"-g\", \"daemon off;\"]", Instruction::Cmd(exec(&["nginx", "-g", "daemon off;"]))),
        ("ENTRYPOINT [\"/bin/tini\", \"--\"]", Instruction::Entrypoint(exec(&["/bin/tini", "--"]))),
        ("entrypoint exec top -b", Instruction::Entrypoint(shell("exec top -b"))),
        ("SHELL [\"/bin/bash\", \"-o\", \"pipefail\", \"-c\"]", Instruction::Shell(strings(&["/bin/bash", "-o", "pipefail", "-c"]))),
        ("COPY a b /dest/", Instruction::Copy(copy(&["a", "b"], "/dest/"))),
        ("COPY [\"a b\", \"/d\"]", Instruction::Copy(copy(&["a b"], "/d"))),
        (
            "COPY --from=build --chown=app:app --chmod=0755 --link /out/app /usr/bin/",
            Instruction::Copy(Copy {
                from: Some(s("build")),
                chown: Some(s("app:app")),
                chmod: Some(s("0755")),
                link: true,
                ..copy(&["/out/app"], "/usr/bin/")
            }),
        ),
        (
            "COPY --parents --exclude=*.md --exclude=tmp ./src/ /app",
            Instruction::Copy(Copy {
                parents: true,
                exclude: strings(&["*.md", "tmp"]),
                ..copy(&["./src/"], "/app")
            }),
        ),
        ("COPY $SRC ${DEST:-/d}", Instruction::Copy(copy(&["$SRC"], "${DEST:-/d}"))),
        ("ADD https://example.com/a.tgz /tmp/", Instruction::Add(add(&["https://example.com/a.tgz"], "/tmp/"))),
        (
            "ADD --checksum=sha256:abc --keep-git-dir=true --chown=1:2 --link=false src.tar /x",
            Instruction::Add(Add {
                checksum: Some(s("sha256:abc")),
                keep_git_dir: true,
                chown: Some(s("1:2")),
                ..add(&["src.tar"], "/x")
            }),
        ),
        ("ENV PATH /usr/local/bin:$PATH", Instruction::Env(pairs(&[("PATH", "/usr/local/bin:$PATH")]))),
        ("ENV GREETING hello  world", Instruction::Env(pairs(&[("GREETING", "hello  world")]))),
        ("ENV A=1 B=\"two words\" C=three\\ words", Instruction::Env(pairs(&[("A", "1"), ("B", "\"two words\""), ("C", "three\\ words")]))),
        ("ENV EMPTY= X=${Y:-z}", Instruction::Env(pairs(&[("EMPTY", ""), ("X", "${Y:-z}")]))),
        ("ARG VERSION", Instruction::Arg(vec![ArgDef { name: s("VERSION"), default: None }])),
        (
            "ARG A=1 B C=\"x y\"",
            Instruction::Arg(vec![
                ArgDef { name: s("A"), default: Some(s("1")) },
                ArgDef { name: s("B"), default: None },
                ArgDef { name: s("C"), default: Some(s("\"x y\"")) },
            ]),
        ),
        ("LABEL version=1.0 \"com.example.desc\"=\"a b\"", Instruction::Label(pairs(&[("version", "1.0"), ("\"com.example.desc\"", "\"a b\"")]))),
        ("LABEL maintainer someone", Instruction::Label(pairs(&[("maintainer", "someone")]))),
        ("WORKDIR /app/$NAME", Instruction::Workdir(s("/app/$NAME"))),
        ("USER app:app", Instruction::User(s("app:app"))),
        ("EXPOSE 80 443/tcp 53/udp", Instruction::Expose(strings(&["80", "443/tcp", "53/udp"]))),
        ("VOLUME /data /logs", Instruction::Volume(strings(&["/data", "/logs"]))),
        ("VOLUME [\"/data\", \"/my logs\"]", Instruction::Volume(strings(&["/data", "/my logs"]))),
        ("STOPSIGNAL SIGTERM", Instruction::StopSignal(s("SIGTERM"))),
        ("MAINTAINER Jane <jane@example.com>", Instruction::Maintainer(s("Jane <jane@example.com>"))),
        ("HEALTHCHECK NONE", Instruction::Healthcheck(Healthcheck::None)),
        (
            "HEALTHCHECK --interval=30s --timeout=1m30s --start-period=500ms --start-interval=2s --retries=3 CMD curl -f http://localhost/",
            Instruction::Healthcheck(Healthcheck::Cmd {
                command: shell("curl -f http://localhost/"),
                interval: Some(Duration::from_secs(30)),
                timeout: Some(Duration::from_secs(90)),
                start_period: Some(Duration::from_millis(500)),
                start_interval: Some(Duration::from_secs(2)),
                retries: Some(3),
            }),
        ),
        (
            "healthcheck cmd [\"/bin/check\"]",
            Instruction::Healthcheck(Healthcheck::Cmd {
                command: exec(&["/bin/check"]),
                interval: None,
                timeout: None,
                start_period: None,
                start_interval: None,
                retries: None,
            }),
        ),
        ("ONBUILD RUN make", Instruction::Onbuild(Box::new(Instruction::Run(run(shell("make")))))),
        (
            "ONBUILD COPY --from=x a /b",
            Instruction::Onbuild(Box::new(Instruction::Copy(Copy {
                from: Some(s("x")),
                ..copy(&["a"], "/b")
            }))),
        ),
    ];
    for (body, want) in cases {
        assert_eq!(one(body), want, "{body:?}");
    }
}

#[test]
fn from_and_stages() {
    let df = parse(
        "# syntax=docker/dockerfile:1\nARG BASE=alpine:3.20\nARG TAG\nFROM --platform=$BUILDPLATFORM ${BASE} AS Build\nRUN make\n\nfrom scratch\nCOPY --from=build /out /\nFROM build as test\n",
    )
    .unwrap();
    assert_eq!(df.directives.syntax.as_deref(), Some("docker/dockerfile:1"));
    assert_eq!(df.global_args.len(), 2);
    assert_eq!(
        df.global_args[0].instruction,
        Instruction::Arg(vec![ArgDef {
            name: s("BASE"),
            default: Some(s("alpine:3.20"))
        }])
    );
    assert_eq!(df.global_args[1].line, 3);
    let names: Vec<Option<&str>> = df.stages.iter().map(|st| st.name.as_deref()).collect();
    assert_eq!(names, vec![Some("build"), None, Some("test")]);
    assert_eq!(
        df.stages[0].from,
        From {
            image: s("${BASE}"),
            name: Some(s("build")),
            platform: Some(s("$BUILDPLATFORM"))
        }
    );
    assert_eq!(
        df.stages.iter().map(|st| st.line).collect::<Vec<_>>(),
        vec![4, 7, 9]
    );
    assert_eq!(df.stages[0].steps.len(), 1);
    assert_eq!(df.stages[0].steps[0].line, 5);
    assert_eq!(df.stages[0].steps[0].original, "RUN make");
    assert_eq!(df.stages[1].steps[0].line, 8);
    assert!(df.stages[2].steps.is_empty());
}

#[test]
fn heredoc_instructions() {
    let df = parse(
        "FROM alpine\nRUN <<EOF\nset -e\necho $HOME\nEOF\nCOPY <<-'CONF' --chmod=0644 /etc/app.conf\n\tkey=value\n\tCONF\nRUN python3 <<A && cat <<B\nprint(1)\nA\nb\nB\nCMD done\n",
    )
    .unwrap();
    let steps = &df.stages[0].steps;
    assert_eq!(
        steps[0].instruction,
        Instruction::Run(Run {
            heredocs: vec![heredoc("EOF", "set -e\necho $HOME\n", true, false)],
            ..run(shell("<<EOF"))
        })
    );
    assert_eq!((steps[0].line, steps[0].end_line), (2, 5));
    // The flag after the heredoc marker is not a flag: flags come first, as in BuildKit.
    assert_eq!(
        parse("FROM a\nCOPY --chmod=0644 <<-'CONF' /etc/app.conf\n\tkey=value\n\tCONF\n")
            .unwrap()
            .stages[0]
            .steps[0]
            .instruction,
        Instruction::Copy(Copy {
            chmod: Some(s("0644")),
            heredocs: vec![heredoc("CONF", "key=value\n", false, true)],
            ..copy(&[], "/etc/app.conf")
        })
    );
    assert_eq!(
        steps[1].instruction,
        Instruction::Copy(Copy {
            heredocs: vec![heredoc("CONF", "key=value\n", false, true)],
            ..copy(&["--chmod=0644"], "/etc/app.conf")
        })
    );
    assert_eq!(
        steps[2].instruction,
        Instruction::Run(Run {
            heredocs: vec![
                heredoc("A", "print(1)\n", true, false),
                heredoc("B", "b\n", true, false)
            ],
            ..run(shell("python3 <<A && cat <<B"))
        })
    );
    assert_eq!(
        (steps[3].line, steps[3].original.as_str()),
        (14, "CMD done")
    );
    assert_eq!(
        one("ONBUILD RUN <<EOF\nmake\nEOF"),
        Instruction::Onbuild(Box::new(Instruction::Run(Run {
            heredocs: vec![heredoc("EOF", "make\n", true, false)],
            ..run(shell("<<EOF"))
        })))
    );
    assert_eq!(
        one("COPY <<one.txt <<two.txt /dest/\n1\none.txt\n2\ntwo.txt"),
        Instruction::Copy(Copy {
            heredocs: vec![
                heredoc("one.txt", "1\n", true, false),
                heredoc("two.txt", "2\n", true, false)
            ],
            ..copy(&[], "/dest/")
        })
    );
}

#[test]
fn escape_directive_changes_continuation_and_words() {
    let df = parse("# escape=`\nFROM mcr.microsoft.com/windows\nCOPY testfile.txt c:\\\nRUN dir `\n  c:\\\nENV A=x` y\n").unwrap();
    let steps = &df.stages[0].steps;
    assert_eq!(df.directives.escape, '`');
    assert_eq!(
        steps[0].instruction,
        Instruction::Copy(copy(&["testfile.txt"], "c:\\"))
    );
    assert_eq!(
        steps[1].instruction,
        Instruction::Run(run(shell("dir   c:\\")))
    );
    assert_eq!(
        steps[2].instruction,
        Instruction::Env(pairs(&[("A", "x` y")]))
    );
    assert_eq!(
        steps[2].instruction.expand('`', &|_| None).unwrap(),
        Instruction::Env(pairs(&[("A", "x y")]))
    );
}

#[test]
fn expansion_of_instructions() {
    let vars = |name: &str| match name {
        "V" => Some(s("1.2")),
        "DIR" => Some(s("/srv")),
        "USER" => Some(s("app")),
        _ => None,
    };
    let cases: Vec<(&str, Instruction)> = vec![
        (
            "ENV A=$V B=\"${DIR}/x y\" C='$V'",
            Instruction::Env(pairs(&[("A", "1.2"), ("B", "/srv/x y"), ("C", "$V")])),
        ),
        (
            "ENV OLD \"quoted $V\"",
            Instruction::Env(pairs(&[("OLD", "quoted 1.2")])),
        ),
        ("LABEL v=$V", Instruction::Label(pairs(&[("v", "1.2")]))),
        ("WORKDIR ${DIR}/app", Instruction::Workdir(s("/srv/app"))),
        ("USER ${USER:-root}", Instruction::User(s("app"))),
        ("USER ${NOBODY:-root}", Instruction::User(s("root"))),
        (
            "EXPOSE ${PORT:-8080}/tcp",
            Instruction::Expose(strings(&["8080/tcp"])),
        ),
        (
            "VOLUME $DIR/data",
            Instruction::Volume(strings(&["/srv/data"])),
        ),
        (
            "STOPSIGNAL ${SIG:-SIGQUIT}",
            Instruction::StopSignal(s("SIGQUIT")),
        ),
        (
            "COPY --chown=$USER app-$V.tar $DIR/",
            Instruction::Copy(Copy {
                chown: Some(s("app")),
                ..copy(&["app-1.2.tar"], "/srv/")
            }),
        ),
        ("ADD \\$V $DIR", Instruction::Add(add(&["$V"], "/srv"))),
        (
            "ARG X=$V",
            Instruction::Arg(vec![ArgDef {
                name: s("X"),
                default: Some(s("1.2")),
            }]),
        ),
        // Shell text is the shell's business.
        ("RUN echo $V", Instruction::Run(run(shell("echo $V")))),
        ("CMD echo ${V}", Instruction::Cmd(shell("echo ${V}"))),
        (
            "ENTRYPOINT [\"$V\"]",
            Instruction::Entrypoint(exec(&["$V"])),
        ),
        (
            "ONBUILD WORKDIR $DIR",
            Instruction::Onbuild(Box::new(Instruction::Workdir(s("$DIR")))),
        ),
    ];
    for (body, want) in cases {
        assert_eq!(one(body).expand('\\', &vars).unwrap(), want, "{body:?}");
    }
    let from = parse("ARG V\nFROM alpine:$V\n").unwrap().stages[0]
        .from
        .clone();
    assert_eq!(
        Instruction::From(from).expand('\\', &vars).unwrap(),
        Instruction::From(From {
            image: s("alpine:1.2"),
            name: None,
            platform: None
        })
    );
}

#[test]
fn error_table() {
    let cases: &[(&str, &str)] = &[
        ("", "Dockerfile: file with no instructions"),
        ("# only a comment\n\n", "Dockerfile: file with no instructions"),
        ("ARG A\n", "Dockerfile:1: no build stage in current context"),
        ("# c\nRUN x\nFROM a", "Dockerfile:2: no build stage in current context"),
        ("FROM a\nFOO bar\n", "Dockerfile:2: unknown instruction: FOO"),
        ("FROM a\nRUN a \\\n  b\ncopyy x y", "Dockerfile:4: unknown instruction: COPYY"),
        ("FROM\n", "Dockerfile:1: FROM requires at least one argument"),
        ("FROM a b\n", "Dockerfile:1: FROM requires either one or three arguments"),
        ("FROM a AS 1st\n", "Dockerfile:1: invalid name for build stage: \"1st\", name can't start with a number or contain symbols"),
        ("FROM a AS x\nFROM b as X\n", "Dockerfile:2: duplicate stage name \"x\""),
        ("FROM --chown=1 a\n", "Dockerfile:1: unknown flag: --chown for FROM"),
        ("FROM a\nRUN\n", "Dockerfile:2: RUN requires at least one argument"),
        ("FROM a\nCMD\n", "Dockerfile:2: CMD requires at least one argument"),
        ("FROM a\nRUN --from=x make\n", "Dockerfile:2: unknown flag: --from for RUN"),
        ("FROM a\nRUN --network=bridge make\n", "Dockerfile:2: invalid value for --network: unsupported network mode \"bridge\""),
        ("FROM a\nRUN --mount=type=nfs,target=/x make\n", "Dockerfile:2: invalid value for --mount: unsupported mount type \"nfs\""),
        ("FROM a\nRUN --mount=type=cache make\n", "Dockerfile:2: invalid value for --mount: mount target must be specified"),
        ("FROM a\nADD --from=b x y\n", "Dockerfile:2: unknown flag: --from for ADD"),
        ("FROM a\nCOPY --from=a --from=b x y\n", "Dockerfile:2: duplicate flag specified: --from"),
        ("FROM a\nCOPY onlyone\n", "Dockerfile:2: COPY requires at least two arguments, but only one was provided. Destination could not be determined"),
        ("FROM a\nCMD --help\n", "Dockerfile:2: unknown flag: --help for CMD"),
        ("FROM a\nSHELL /bin/sh -c\n", "Dockerfile:2: SHELL requires the arguments to be in JSON form"),
        ("FROM a\nSHELL [\"sh\", 1]\n", "Dockerfile:2: SHELL requires the arguments to be in JSON form"),
        ("FROM a\nSHELL []\n", "Dockerfile:2: SHELL requires at least one argument"),
        ("FROM a\nENV\n", "Dockerfile:2: ENV requires at least one argument"),
        ("FROM a\nENV ONLYKEY\n", "Dockerfile:2: ENV must have two arguments"),
        ("FROM a\nENV A=1 B\n", "Dockerfile:2: Syntax error - can't find = in \"B\". Must be of the form: name=value"),
        ("FROM a\nENV =x\n", "Dockerfile:2: ENV names can not be blank"),
        ("FROM a\nENV A=\"open\n", "Dockerfile:2: unterminated quote"),
        ("FROM a\nLABEL a='open\n", "Dockerfile:2: unterminated quote"),
        ("FROM a\nWORKDIR \"/open\n", "Dockerfile:2: unexpected end of statement while looking for matching double-quote"),
        ("FROM a\nUSER ${NAME\n", "Dockerfile:2: unexpected end of statement while looking for matching }"),
        ("FROM a\nWORKDIR\n", "Dockerfile:2: WORKDIR requires at least one argument"),
        ("FROM a\nEXPOSE\n", "Dockerfile:2: EXPOSE requires at least one argument"),
        ("FROM a\nVOLUME [\"\"]\n", "Dockerfile:2: VOLUME specified can not be an empty string"),
        ("FROM a\nHEALTHCHECK NONE x\n", "Dockerfile:2: HEALTHCHECK NONE takes no arguments"),
        ("FROM a\nHEALTHCHECK RUN x\n", "Dockerfile:2: Unknown type \"RUN\" in HEALTHCHECK (try CMD)"),
        ("FROM a\nHEALTHCHECK --interval=5 CMD x\n", "Dockerfile:2: invalid value for --interval: invalid duration \"5\""),
        ("FROM a\nHEALTHCHECK --timeout=10us CMD x\n", "Dockerfile:2: invalid value for --timeout: \"10us\" cannot be less than 1ms"),
        ("FROM a\nHEALTHCHECK --retries=-1 CMD x\n", "Dockerfile:2: invalid value for --retries: \"-1\" is not a count"),
        ("FROM a\nONBUILD FROM b\n", "Dockerfile:2: FROM isn't allowed as an ONBUILD trigger"),
        ("FROM a\nONBUILD maintainer me\n", "Dockerfile:2: MAINTAINER isn't allowed as an ONBUILD trigger"),
        ("FROM a\nONBUILD ONBUILD RUN x\n", "Dockerfile:2: chaining ONBUILD via `ONBUILD ONBUILD` isn't allowed"),
        ("FROM a\nONBUILD\n", "Dockerfile:2: ONBUILD requires at least one argument"),
        ("FROM a\nONBUILD BOGUS x\n", "Dockerfile:2: unknown instruction: BOGUS"),
        ("FROM a\n\nRUN <<EOF\necho\n", "Dockerfile:3: unterminated heredoc: EOF"),
        ("FROM a\nRUN <<EOF\nBAD line\nEOF\nBAD x\n", "Dockerfile:5: unknown instruction: BAD"),
        ("FROM a\nCOPY <<A <<B /x\na\nA\n", "Dockerfile:2: unterminated heredoc: B"),
        ("# escape=x\nFROM a\n", "Dockerfile:1: invalid escape token 'x' does not match ` or \\"),
        ("FROM a\nADD --link=yes a b\n", "Dockerfile:2: invalid value for --link: expecting boolean value, got \"yes\""),
    ];
    for (text, want) in cases {
        assert_eq!(err(text), *want, "{text:?}");
    }
}

#[test]
fn durations() {
    let cases: &[(&str, Duration)] = &[
        ("0", Duration::ZERO),
        ("1s", Duration::from_secs(1)),
        ("1.5s", Duration::from_millis(1500)),
        ("2m", Duration::from_secs(120)),
        ("1h2m3s", Duration::from_secs(3723)),
        ("250ms", Duration::from_millis(250)),
    ];
    for (text, want) in cases {
        assert_eq!(go_duration(text), Ok(*want), "{text:?}");
    }
    for bad in ["", "s", "5", "1x", "-1s"] {
        assert!(go_duration(bad).is_err(), "{bad:?}");
    }
}
