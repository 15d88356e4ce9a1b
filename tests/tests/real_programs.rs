//! Real programs under the preload, in sampled and exact mode: same stdout (and stderr where the
//! program writes to it) and same exit status as without it, and a final dump the analyzer reads.
//! A program that is not installed is skipped with a printed reason (CI installs them all).

use std::path::{Path, PathBuf};
use std::time::Duration;

use jeprof_tests::*;

const PYTHON: &str = r#"
acc = 0
d = {}
l = []
for i in range(300000):
    k = "key%d" % (i % 5000)
    v = [i, str(i) * 3, (i, i + 1)]
    d[k] = v
    l.append(str(i))
    if len(l) > 1000:
        acc = (acc * 31 + len("".join(l))) % 1000000007
        l = []
    acc = (acc * 31 + len(v[1])) % 1000000007
print("checksum", acc, len(d))
"#;

const PERL: &str = r#"
my %h; my @l; my $acc = 0;
for my $i (0 .. 299999) {
    my $k = "key" . ($i % 5000);
    $h{$k} = [$i, "$i" x 3];
    push @l, "$i";
    if (@l > 1000) { $acc = ($acc * 31 + length(join("", @l))) % 1000000007; @l = (); }
    $acc = ($acc * 31 + length($h{$k}[1])) % 1000000007;
}
print "checksum $acc ", scalar(keys %h), "\n";
"#;

const SQL: &str = "
CREATE TABLE t(id INTEGER PRIMARY KEY, grp INTEGER, name TEXT);
WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c WHERE x < 50000)
INSERT INTO t SELECT x, x % 97, printf('row-%08d', x * 7919 % 100003) FROM c;
CREATE INDEX t_name ON t(name);
SELECT count(*), sum(id), sum(grp), max(name), min(name) FROM t;
SELECT grp, count(*), sum(length(name)) FROM t GROUP BY grp ORDER BY grp LIMIT 5;
SELECT count(DISTINCT name) FROM t;
";

/// Which program to use for `name`: a distro binary in /usr/bin first (a PATH shim would run
/// the real program in another process), then PATH.
fn find(name: &str) -> Option<PathBuf> {
    let usr = Path::new("/usr/bin").join(name);
    if usr.is_file() {
        return Some(usr);
    }
    let paths = std::env::var_os("PATH")?;
    std::env::split_paths(&paths)
        .map(|d| d.join(name))
        .find(|p| p.is_file())
}

/// Runs `make_run()` unprofiled, then profiled in sampled and in exact mode, and compares.
/// Returns the directories holding the dumps of the two profiled runs.
fn compare(test: &str, compare_stderr: bool, make_run: impl Fn() -> Run) -> Vec<TempDir> {
    let control = make_run().timeout(Duration::from_secs(180)).run();
    let mut dirs = Vec::new();
    for (mode, exact) in [("sampled", false), ("exact", true)] {
        let dir = TempDir::new(&format!("{test}-{mode}"));
        let conf = if exact {
            exact_conf(&dir)
        } else {
            format!("prof_prefix:{}", dir.prefix())
        };
        let out = make_run()
            .profiled(&conf)
            .timeout(Duration::from_secs(180))
            .run();
        assert_eq!(
            out.code(),
            control.code(),
            "{test} {mode}: exit status\ncontrol:\n{}\nprofiled:\n{}",
            control.report(),
            out.report()
        );
        assert_eq!(
            out.stdout,
            control.stdout,
            "{test} {mode}: stdout\n{}",
            out.report()
        );
        if compare_stderr {
            assert_eq!(
                out.stderr,
                control.stderr,
                "{test} {mode}: stderr\n{}",
                out.report()
            );
        }
        let dump = final_dump(&dir, out.pid);
        let heap = read_heap(&dump);
        assert_eq!(heap.period, if exact { 1 } else { 1 << 19 });
        // In-use bytes at exit may be zero (sqlite frees everything), allocated bytes not.
        let t = top(&dump, &[]);
        let a = top(&dump, &["--alloc-space"]);
        assert!(
            a.total_bytes > 0 && !a.rows.is_empty(),
            "{test} {mode}: nothing allocated\n{}",
            a.render()
        );
        eprintln!(
            "{test} {mode}: {:?} (control {:?}), {} B in use, {} rows",
            out.elapsed,
            control.elapsed,
            t.total_bytes,
            t.rows.len()
        );
        dirs.push(dir);
    }
    dirs
}

#[test]
fn python() {
    let Some(python) = find("python3") else {
        return skip("python", "python3 not installed");
    };
    compare("python", true, || Run::new(&python).args(&["-c", PYTHON]));
}

#[test]
fn perl() {
    let Some(perl) = find("perl") else {
        return skip("perl", "perl not installed");
    };
    compare("perl", true, || Run::new(&perl).args(&["-e", PERL]));
}

#[test]
fn sqlite() {
    let Some(sqlite) = find("sqlite3") else {
        return skip("sqlite", "sqlite3 not installed");
    };
    compare("sqlite", true, || {
        Run::new(&sqlite).arg(":memory:").stdin(SQL)
    });
}

#[test]
fn java_version() {
    let Some(java) = find("java") else {
        return skip("java_version", "java not installed");
    };
    let dirs = compare("java_version", true, || Run::new(&java).arg("-version"));
    // The JVM maps its heap and code cache through mmap64: the sidecar shows them in libjvm.so.
    for dir in &dirs {
        let sidecar = dumps_in(dir.path(), "jeprof")
            .into_iter()
            .find(|d| d.mmap && d.tag == "f")
            .expect("a final mmap dump of the JVM");
        let t = top(&sidecar.path, &["--by", "library"]);
        let jvm = t
            .rows
            .iter()
            .find(|r| r.name.ends_with("/libjvm.so") || r.name == "libjvm.so")
            .map_or(0, |r| r.flat_bytes);
        assert!(
            jvm >= 16 << 20,
            "{}: libjvm.so maps {jvm} B\n{}",
            t.command,
            t.render()
        );
    }
}

#[test]
fn javac_compile_and_run() {
    let (Some(java), Some(javac)) = (find("java"), find("javac")) else {
        return skip("javac_compile_and_run", "java or javac not installed");
    };
    let work = TempDir::new("javac");
    let src = work.path().join("Churn.java");
    std::fs::copy(java_dir().join("Churn.java"), &src).unwrap();
    let classes = work.path().join("classes");
    // Each run compiles into the same directory; the class file must come out the same.
    let dirs = compare("javac", true, || {
        Run::new(&javac).args(&["-d", &classes.to_string_lossy(), &src.to_string_lossy()])
    });
    assert!(classes.join("Churn.class").is_file());
    drop(dirs);
    compare("java_churn", true, || {
        Run::new(&java).args(&["-cp", &classes.to_string_lossy(), "Churn"])
    });
}
