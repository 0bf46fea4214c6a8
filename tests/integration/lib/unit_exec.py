#!/usr/bin/env python3
"""Runs a systemd service unit's command lines the way systemd would, without systemd.

    unit_exec.py [--map PATH=REPLACEMENT]... [--env-file FILE] [--log FILE]
                 UNIT INSTANCE start|stop

start runs ExecStartPre=, ExecStart= and ExecStartPost= in order, stop runs
ExecStop=; the first command that fails ends the phase, and unit_exec exits
with its status (1 if it was killed). Each command line is printed to
stderr before it runs. --map replaces a word equal to PATH (the installed
binary the unit names) by REPLACEMENT (the built one). --env-file stands in
for the unit's EnvironmentFile= (whose path is /etc/...).

Only the parts of systemd.service(5), systemd.exec(5) and systemd.unit(5)
that our units use are implemented, from the rules systemd's sources apply;
anything else in a command line or a setting we emulate is refused, so a
unit that starts using more fails here instead of being run wrongly:
  - unit files: [Section], Key=value, continuation lines ending in '\\',
    '#' and ';' comments, an empty value resetting a list;
  - specifiers %i (the instance), %I (the same, unescaped) and %%;
  - command lines split into words with '...' and "..." quoting and C
    escapes (extract_first_word(EXTRACT_UNQUOTE|EXTRACT_CUNESCAPE)), and
    the prefix '-' (failure ignored);
  - "$VAR" as a whole word: VAR's value split at whitespace, with quotes
    (EXTRACT_RELAX|EXTRACT_UNQUOTE, no escapes), an empty or unset VAR
    giving no word; "${VAR}" anywhere: VAR's value as it is, within one
    word; "$$": "$"; any other '$' is kept (replace_env_argv());
  - EnvironmentFile= in systemd's own syntax (parse_env_file_internal()):
    KEY=value lines, '#'/';' comments at the start of a line only, '...'
    and "..." quoting, backslash escapes and continuations;
  - Environment= assignments; the environment is only these, PATH as
    systemd sets it, and the sanitizer options of the test run;
  - Type=oneshot and Type=forking (the command returns once started);
  - SuccessExitStatus= (numbers only);
  - CapabilityBoundingSet= and NoNewPrivileges= through setpriv(1), and
    UMask=, so the commands run with the privileges the unit gives them.
Sandboxing that needs namespaces (ProtectSystem=, PrivateTmp=, ...) is not
emulated: `systemd-analyze verify` checks those settings.
"""

import argparse
import os
import re
import subprocess
import sys

WHITESPACE = " \t\n\r"
SYSTEMD_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
PASSTHROUGH = ("ASAN_OPTIONS", "UBSAN_OPTIONS", "LSAN_OPTIONS", "MSAN_OPTIONS")
ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*\Z")
C_ESCAPES = {"a": "\a", "b": "\b", "f": "\f", "n": "\n", "r": "\r", "t": "\t", "v": "\v",
             "\\": "\\", '"': '"', "'": "'", "s": " "}


def die(msg):
    sys.exit("unit_exec: " + msg)


def parse_unit(path):
    """{section: {key: [values]}}, an empty value resetting the list."""
    sections, cur = {}, None
    lines = open(path).read().split("\n")
    i = 0
    while i < len(lines):
        line = lines[i].strip()
        i += 1
        if not line or line[0] in "#;":
            continue
        while line.endswith("\\") and i < len(lines):
            nxt = lines[i].strip()
            i += 1
            if nxt[:1] in ("#", ";"):
                continue
            line = line[:-1] + " " + nxt
        if line.startswith("[") and line.endswith("]"):
            cur = sections.setdefault(line[1:-1], {})
            continue
        if cur is None or "=" not in line:
            die("%s: cannot parse '%s'" % (path, line))
        key, _, value = line.partition("=")
        key, value = key.strip(), value.strip()
        if value == "":
            cur[key] = []
        else:
            cur.setdefault(key, []).append(value)
    return sections


def specifiers(s, instance):
    out, i = [], 0
    while i < len(s):
        c = s[i]
        if c != "%":
            out.append(c)
            i += 1
            continue
        if i + 1 >= len(s):
            die("a lone '%' at the end of '%s'" % s)
        spec = s[i + 1]
        if spec == "%":
            out.append("%")
        elif spec in "iI":
            out.append(instance)
        else:
            die("specifier %%%s is not implemented here" % spec)
        i += 2
    return "".join(out)


def extract_words(s, unquote=True, cunescape=False, relax=False):
    """extract_first_word() repeated: a list of words."""
    words, i, n = [], 0, len(s)
    while True:
        while i < n and s[i] in WHITESPACE:
            i += 1
        if i >= n:
            return words
        word, quote = [], None
        while i < n:
            c = s[i]
            if c == "\\":
                i += 1
                if i >= n:
                    if relax:
                        break
                    die("a trailing backslash in '%s'" % s)
                e = s[i]
                if cunescape:
                    if e in C_ESCAPES:
                        word.append(C_ESCAPES[e])
                    else:
                        die("the escape \\%s is not implemented here" % e)
                else:
                    word.append(e)
                i += 1
            elif quote:
                if c == quote:
                    quote = None
                else:
                    word.append(c)
                i += 1
            elif unquote and c in "'\"":
                quote = c
                i += 1
            elif c in WHITESPACE:
                break
            else:
                word.append(c)
                i += 1
        if quote and not relax:
            die("unbalanced quoting in '%s'" % s)
        words.append("".join(word))


def parse_command(value, instance):
    """(ignore_failure, words) of one Exec*= value."""
    line = specifiers(value, instance)
    words = extract_words(line, cunescape=True)
    if not words:
        die("an empty command")
    first, ignore = words[0], False
    while first and first[0] in "-@:+!":
        if first[0] != "-":
            die("the prefix '%s' is not implemented here" % first[0])
        ignore = True
        first = first[1:]
    words[0] = first
    if ";" in words:
        die("';' between commands is not implemented here")
    if not first.startswith("/"):
        die("'%s' is not an absolute path" % first)
    return ignore, words


def parse_env_file(path):
    """parse_env_file_internal(): [(key, value)] in order."""
    text = open(path).read()
    out = []
    state, key, value = "PRE_KEY", [], []
    last_key_ws = last_value_ws = None

    def push():
        k = "".join(key)
        if last_key_ws is not None:
            k = k[:last_key_ws]
        out.append((k, "".join(value)))

    for c in text:
        if state == "PRE_KEY":
            if c in "#;":
                state = "COMMENT"
            elif c not in WHITESPACE:
                state, key, value, last_key_ws = "KEY", [c], [], None
        elif state == "KEY":
            if c == "\n":
                state = "PRE_KEY"
            elif c == "=":
                state, last_value_ws = "PRE_VALUE", None
            else:
                if c not in WHITESPACE:
                    last_key_ws = None
                elif last_key_ws is None:
                    last_key_ws = len(key)
                key.append(c)
        elif state == "PRE_VALUE":
            if c == "\n":
                push()
                state = "PRE_KEY"
            elif c == "'":
                state = "SINGLE"
            elif c == '"':
                state = "DOUBLE"
            elif c == "\\":
                state = "VALUE_ESCAPE"
            elif c not in WHITESPACE:
                state = "VALUE"
                value.append(c)
        elif state == "VALUE":
            if c == "\n":
                if last_value_ws is not None:
                    del value[last_value_ws:]
                push()
                state = "PRE_KEY"
            elif c == "\\":
                state, last_value_ws = "VALUE_ESCAPE", None
            else:
                if c not in WHITESPACE:
                    last_value_ws = None
                elif last_value_ws is None:
                    last_value_ws = len(value)
                value.append(c)
        elif state == "VALUE_ESCAPE":
            state = "VALUE"
            if c != "\n":
                value.append(c)
        elif state == "SINGLE":
            if c == "'":
                state = "PRE_VALUE"
            else:
                value.append(c)
        elif state == "DOUBLE":
            if c == '"':
                state = "PRE_VALUE"
            elif c == "\\":
                state = "DOUBLE_ESCAPE"
            else:
                value.append(c)
        elif state == "DOUBLE_ESCAPE":
            state = "DOUBLE"
            if c in '"\\`$':
                value.append(c)
            elif c != "\n":
                value.extend(["\\", c])
        elif state == "COMMENT":
            if c == "\n":
                state = "PRE_KEY"
    if state in ("PRE_VALUE", "VALUE", "VALUE_ESCAPE", "SINGLE", "DOUBLE", "DOUBLE_ESCAPE"):
        if state == "VALUE" and last_value_ws is not None:
            del value[last_value_ws:]
        push()
    return out


def replace_env(word, env):
    """${VAR} anywhere, $$ as $; any other '$' stays."""
    out, i = [], 0
    while i < len(word):
        if word[i] == "$" and word[i + 1:i + 2] == "{":
            end = word.find("}", i + 2)
            if end < 0:
                out.append(word[i:])
                break
            out.append(env.get(word[i + 2:end], ""))
            i = end + 1
        elif word[i] == "$" and word[i + 1:i + 2] == "$":
            out.append("$")
            i += 2
        else:
            out.append(word[i])
            i += 1
    return "".join(out)


def expand(words, env):
    """replace_env_argv()."""
    out = []
    for w in words:
        if w.startswith("$") and w[1:2] not in ("{", "$") and ENV_NAME.match(w[1:]):
            if w[1:] in env:
                out.extend(extract_words(env[w[1:]], relax=True))
        else:
            out.append(replace_env(w, env))
    return out


def environment(svc, env_file):
    env = {"PATH": SYSTEMD_PATH}
    for k in PASSTHROUGH:
        if k in os.environ:
            env[k] = os.environ[k]
    for a in svc.get("Environment", []):
        for assignment in extract_words(specifiers(a, "")):
            k, _, v = assignment.partition("=")
            env[k] = v
    files = svc.get("EnvironmentFile", [])
    if files:
        if len(files) != 1 or not env_file:
            die("give the unit's one EnvironmentFile= with --env-file")
        env.update(parse_env_file(env_file))
    return env


def sandbox(svc):
    """setpriv(1) arguments for CapabilityBoundingSet= and NoNewPrivileges=."""
    pre = []
    caps = svc.get("CapabilityBoundingSet")
    if caps:
        names = [c.lower()[len("cap_"):] for v in caps for c in v.split()]
        if any(v.startswith("~") for v in caps):
            die("an inverted CapabilityBoundingSet= is not implemented here")
        pre += ["--bounding-set", ",".join(["-all"] + ["+" + n for n in names])]
    if svc.get("NoNewPrivileges", ["no"])[-1] in ("yes", "true", "1", "on"):
        pre += ["--no-new-privs"]
    return ["setpriv"] + pre + ["--"] if pre else []


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--map", action="append", default=[])
    ap.add_argument("--env-file")
    ap.add_argument("unit")
    ap.add_argument("instance")
    ap.add_argument("phase", choices=("start", "stop"))
    args = ap.parse_args()

    svc = parse_unit(args.unit).get("Service", {})
    kind = svc.get("Type", ["simple"])[-1]
    if kind not in ("oneshot", "forking"):
        die("Type=%s is not implemented here" % kind)
    mapping = dict(m.split("=", 1) for m in args.map)
    env = environment(svc, args.env_file)
    success = {0} | {int(x) for v in svc.get("SuccessExitStatus", []) for x in v.split()}
    umask = int(svc.get("UMask", ["0022"])[-1], 8)
    wrap = sandbox(svc)
    keys = (["ExecStartPre", "ExecStart", "ExecStartPost"] if args.phase == "start"
            else ["ExecStop"])
    for key in keys:
        for value in svc.get(key, []):
            ignore, words = parse_command(value, args.instance)
            argv = [mapping.get(w, w) for w in expand(words, env)]
            print("+ %s" % " ".join(repr(a) if not a or set(a) & set(WHITESPACE + "'\"$")
                                    else a for a in argv), file=sys.stderr, flush=True)
            p = subprocess.run(wrap + argv, env=env, preexec_fn=lambda: os.umask(umask),
                               stdin=subprocess.DEVNULL)
            rc = p.returncode if p.returncode >= 0 else 1
            if rc not in success and not ignore:
                print("unit_exec: %s= failed with status %d" % (key, rc), file=sys.stderr)
                sys.exit(rc)
    sys.exit(0)


if __name__ == "__main__":
    main()
