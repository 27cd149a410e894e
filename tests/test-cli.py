#!/usr/bin/env python3
"""test-cli: the dme command-line tool end to end (TAP).

Checks the habits of the tool: help on stdout for `dme help`, `dme --help`
and `dme COMMAND --help`, `dme --version` (the library's version and its
backends), getopt_long parsing (--opt=V and --opt V), exit status 0/1/2
(usage errors exit 2 with a message). `dme info --json` prints one JSON
object with the documented keys; `dme bench SUITE --json` prints Google
Benchmark's JSON document ("context", "benchmarks") with dme's derived keys
under "dme_keys", passes --benchmark_* flags through, and reports progress
on stderr only. The CLI links no benchmark code: `dme bench` runs dme-bench,
and in a build without benchmarks (--no-bench) it says so, exit 1, while
`dme bench --help` still describes it. A bad DME_* environment makes
`dme config` fail. Benchmark values are only checked to be finite positive
numbers: speed targets live in the benchmark output, never in tests."""
import json
import math
import os
import re
import shutil
import subprocess
import sys
import tempfile

dme = sys.argv[1]
no_bench = '--no-bench' in sys.argv[2:]
n = 0
failed = 0


def ok(cond, name, *diag):
    global n, failed
    n += 1
    print(f"{'' if cond else 'not '}ok {n} - {name}")
    if not cond:
        failed += 1
        for d in diag:
            print(f"# {d}")


def run(*args, env=None):
    e = dict(os.environ)
    for k in list(e):
        if k.startswith('DME_'):
            del e[k]
    if env:
        e.update(env)
    return subprocess.run([dme, *args], capture_output=True, text=True, env=e, timeout=600)


r = run('info', '--json')
ok(r.returncode == 0, 'dme info --json exits 0')
try:
    info = json.loads(r.stdout)
except ValueError:
    info = {}
ok(set(info) >= {'kernel', 'iommu', 'numa', 'hugepages'}, 'info has kernel, iommu, numa, hugepages')
ok(info.get('iommu', {}).get('best_backend') in ('iommufd', 'vfio', 'sim'), 'info names a backend')
ok(all({'node', 'page_kb', 'total', 'free'} <= set(p) for p in info.get('hugepages', [])),
   'every hugepage pool has node, page size, total, free')
ok(info.get('numa', {}).get('nodes', 0) >= 1, 'info counts at least one NUMA node')
ok(isinstance(info.get('devices'), list) and
   all({'address', 'driver', 'numa_node', 'iommu_group', 'cdev'} <= set(d) for d in info['devices']),
   'info lists the vfio-pci devices with address, numa_node, iommu_group and cdev')

r = run('info')
ok(r.returncode == 0 and 'best backend' in r.stdout and 'vfio-pci' in r.stdout,
   'dme info prints a table, with a vfio-pci line')

r = run('info', '--bogus')
ok(r.returncode == 2 and 'unknown option' in r.stderr, 'unknown option exits 2 with a message')

r = run('frobnicate')
ok(r.returncode == 2 and 'unknown command' in r.stderr, 'unknown command exits 2')

# help, version and the usage errors of every command
r = run('help')
ok(r.returncode == 0 and r.stdout.startswith('usage: dme') and not r.stderr, 'dme help prints the usage on stdout, exit 0')
cmds = re.findall(r'^  (\w+)  ', r.stdout.split('commands:')[-1].split('options:')[0], re.M)
ok({'info', 'demo', 'bench', 'config', 'help'} <= set(cmds), 'dme help lists info, demo, bench, config, help')
ok(all(re.search(rf'^  {c}\s+\S', r.stdout, re.M) for c in '012') and 'exit status' in r.stdout,
   'dme help documents the exit status 0, 1, 2')
for args in (['--help'], ['-h']):
    h = run(*args)
    ok(h.returncode == 0 and h.stdout == r.stdout, f'dme {args[0]} prints what dme help prints')
r = run()
ok(r.returncode == 2 and r.stderr.startswith('usage: dme') and not r.stdout, 'dme alone: usage on stderr, exit 2')
r = run('--bogus')
ok(r.returncode == 2 and "unknown option '--bogus'" in r.stderr, 'dme --bogus exits 2')
r = run('--version')
lines = r.stdout.splitlines()
ok(r.returncode == 0 and len(lines) == 3 and re.fullmatch(r'dme \d+\.\d+\.\d+', lines[0]) and
   re.fullmatch(r'libdme \d+\.\d+\.\d+', lines[1]),
   'dme --version prints the versions of dme and libdme', r.stdout)
ok(len(lines) == 3 and lines[2].startswith('backends: ') and lines[2].split()[-1] == 'sim' and
   set(lines[2].split()[1:]) <= {'iommufd', 'vfio', 'noiommu', 'sim'},
   'dme --version lists the backends built in, the simulator last')
ok(run('-V').stdout == r.stdout, 'dme -V is dme --version')
for c in cmds:
    h = run(c, '--help')
    ok(h.returncode == 0 and h.stdout.startswith(f'usage: dme {c}') and not h.stderr,
       f'dme {c} --help: its usage and options on stdout, exit 0')
    ok(run('help', c).stdout == h.stdout, f'dme help {c} prints what dme {c} --help prints')
    b = run(c, '--bogus')
    if c == 'bench' and no_bench:
        ok(b.returncode == 1 and 'has no benchmarks' in b.stderr,
           'dme bench --bogus without benchmarks: there is no dme-bench to ask, exit 1')
        continue
    ok(b.returncode == 2 and "unknown option '--bogus'" in b.stderr and
       f"Try 'dme {c} --help'" in b.stderr, f'dme {c} --bogus: a usage error, exit 2')
r = run('help', 'nosuch')
ok(r.returncode == 2 and "unknown command 'nosuch'" in r.stderr, 'dme help nosuch exits 2')
r = run('info', 'extra')
ok(r.returncode == 2 and "unexpected argument 'extra'" in r.stderr, 'an unexpected operand exits 2')
r = run('info', '--json=1')
ok(r.returncode == 2 and 'takes no value' in r.stderr, '--json=1 exits 2: the option takes no value')

r = run('config')
ok(r.returncode == 0 and 'DME_BACKEND' in r.stdout, 'dme config lists the variables')

r = run('config', env={'DME_BACKNED': 'sim'})
ok(r.returncode == 1 and 'unknown variable DME_BACKNED' in r.stderr,
   'a misspelt DME_ variable is reported')

r = run('config', env={'DME_HUGEPAGE': '3M'})
ok(r.returncode == 1 and 'auto|1G|2M|thp|none' in r.stderr, 'a bad value lists the choices')

# The CLI links no benchmark code: `dme bench` runs dme-bench (built with
# -Dbench), or says that this build has none (--no-bench).
readelf = shutil.which('readelf')
if readelf:
    r = subprocess.run([readelf, '-d', dme], capture_output=True, text=True)
    needed = re.findall(r'\(NEEDED\).*\[(.*)\]', r.stdout)
    ok(r.returncode == 0 and needed and
       not any(n.startswith(('libstdc++', 'libbenchmark')) for n in needed),
       f'the dme CLI links neither libstdc++ nor Google Benchmark ({" ".join(needed)})')
else:
    ok(True, 'the dme CLI links neither libstdc++ nor Google Benchmark # SKIP no readelf')


def gbench(text, name):
    """The JSON document of dme bench, checked to have Google Benchmark's shape."""
    try:
        d = json.loads(text)
    except ValueError:
        d = {}
    ctx = d.get('context', {})
    ok({'date', 'host_name', 'num_cpus', 'library_build_type', 'dme_version', 'dme_build_type',
        'dme_backends', 'dme_suite'} <= set(ctx),
       f'{name}: "context" has date, host_name, num_cpus, library_build_type and dme_version, '
       'dme_build_type, dme_backends, dme_suite', sorted(ctx))
    bs = d.get('benchmarks', [])
    ok(bs and all({'name', 'run_type', 'iterations', 'real_time', 'cpu_time', 'time_unit'} <= set(b)
                  for b in bs),
       f'{name}: "benchmarks" entries have name, run_type, iterations, real_time, cpu_time, time_unit')
    ok(all(isinstance(b.get('real_time'), (int, float)) and b['real_time'] > 0 and
           b.get('time_unit') in ('ns', 'us', 'ms', 's') for b in bs if b.get('run_type') == 'iteration'),
       f'{name}: every run has a positive real_time and a time unit')
    # compare.py orders runs by (family_index, per_family_instance_index): one family a case
    fam = {}
    for b in bs:
        fam.setdefault(b.get('family_index'), set()).add(b.get('run_name'))
    ok(all(len(v) == 1 for v in fam.values()) and None not in fam,
       f'{name}: each case has a family_index of its own')
    return d


def positive(d, name, keys=()):
    dk = d.get('dme_keys', {})
    for k in keys:
        ok(k in dk, f'{name}: dme_keys has {k}')
    bad = [k for k, v in dk.items()
           if not (isinstance(v, (int, float)) and math.isfinite(v) and v > 0)]
    ok(dk and not bad, f'{name}: every derived key ({len(dk)}) is a finite positive number', *bad)


def progress(err, suite, cases):
    starts = re.findall(rf'^dme bench: \[(\d+)/(\d+)\] {suite}/\w+ \.\.\.$', err, re.M)
    ends = re.findall(rf'^dme bench: \[(\d+)/(\d+)\] {suite}/\w+ done \(\d+\.\d s\)$', err, re.M)
    return len(starts) == len(ends) == cases


if no_bench:
    r = run('bench', 'iova', '--json')
    ok(r.returncode == 1 and 'has no benchmarks' in r.stderr and '-Dbench' in r.stderr and
       not r.stdout, 'dme bench in a build without benchmarks says so, and how to get them')
    r = run('bench', '--help')
    ok(r.returncode == 0 and '--benchmark_' in r.stdout and 'no benchmarks' in r.stdout,
       'dme bench --help without benchmarks: the options, and that this build has none')
else:
    r = run('bench')
    ok(r.returncode == 2 and 'iova' in r.stderr, 'dme bench without a suite lists the suites')

    r = run('bench', 'nosuch')
    ok(r.returncode == 2 and "no suite 'nosuch'" in r.stderr, 'unknown suite exits 2')

    r = run('bench', '--help')
    ok(r.returncode == 0 and re.search(r'^suites:\n  iova ', r.stdout, re.M),
       'dme bench --help lists the suites of this build (dme-bench\'s help)')

    r = run('bench', 'iova', '--min-time')
    ok(r.returncode == 2 and 'needs a value' in r.stderr, '--min-time without a value exits 2')
    r = run('bench', 'iova', '--min-time=fast')
    ok(r.returncode == 2 and '--min-time' in r.stderr, '--min-time=fast exits 2')
    r = run('bench', 'iova', '--benchmark_bogus=1')
    ok(r.returncode == 2 and '--benchmark_bogus=1' in r.stderr, 'a --benchmark_ flag Google Benchmark lacks exits 2')
    r = run('bench', 'iova', '--benchmark_format=csv')
    ok(r.returncode == 2, '--benchmark_format=csv exits 2 (dme writes the table or json)')
    r = run('bench', 'iova', '--benchmark_filter=nosuchcase')
    ok(r.returncode == 2 and 'no case' in r.stderr, 'filters that leave no case exit 2')
    r = run('bench', 'iova', '--list', '--benchmark_filter=churn')
    names = r.stdout.split()
    ok(r.returncode == 0 and names and all(x.startswith('iova/') and 'churn' in x for x in names) and
       not r.stderr, 'dme bench --list prints the names --benchmark_filter selects, runs nothing')

    r = run('bench', 'iova', '--json', '--min-time', '0.01')
    ok(r.returncode == 0, 'dme bench iova --json --min-time 0.01 exits 0')
    b = gbench(r.stdout, 'bench iova --json')
    cases = len({x['run_name'] for x in b.get('benchmarks', [])})
    positive(b, 'bench iova', ['iova.cached_ns_per_pair', 'iova.speedup_vs_naive_1e5',
                               'iova.speedup_vs_tree', 'iova.scaling_2t'])
    ok(cases >= 5 and progress(r.stderr, 'iova', cases),
       f'bench iova --json: stdout is only JSON; stderr has a line as each of the {cases} cases starts and ends')
    r = run('bench', '--min-time=0.01', 'iova', '--quiet')
    ok(r.returncode == 0 and re.search(r'^iova/cached_pair_1t/real_time\s+\S+ ns', r.stdout, re.M) and
       'iova.speedup_vs_tree' in r.stdout and not r.stderr,
       'dme bench --min-time=S SUITE --quiet: the table and the dme keys, nothing on stderr')

    # Google Benchmark's flags: a filter, repetitions, a file
    with tempfile.TemporaryDirectory() as tmp:
        out = os.path.join(tmp, 'run.json')
        r = run('bench', 'iova', '--json', '--min-time=0.01', '--benchmark_filter=cached_pair_1t',
                '--benchmark_repetitions=3', f'--benchmark_out={out}')
        ok(r.returncode == 0, 'dme bench iova with --benchmark_filter, _repetitions and _out exits 0')
        b = gbench(r.stdout, 'bench iova --benchmark_repetitions=3')
        bs = b.get('benchmarks', [])
        runs = [x for x in bs if x.get('run_type') == 'iteration']
        aggs = {x.get('aggregate_name'): x for x in bs if x.get('run_type') == 'aggregate'}
        ok(len(runs) == 3 and {'mean', 'median', 'stddev'} <= set(aggs) and
           all(x['name'].startswith('iova/cached_pair_1t') for x in bs),
           '--benchmark_filter selects the case, --benchmark_repetitions=3 gives 3 runs and the aggregates')
        v = b.get('dme_keys', {}).get('iova.cached_ns_per_pair')
        med = aggs.get('median', {}).get('real_time')
        ok(isinstance(v, float) and med and abs(v - med) <= 1e-5 * med,
           'with repetitions the derived keys use the median')
        ok(b.get('dme_keys', {}).get('iova.speedup_vs_tree', 0) is None,
           'a derived key whose cases did not run is null')
        try:
            f = json.load(open(out))
        except (OSError, ValueError):
            f = {}
        ok(set(f) == {'context', 'benchmarks', 'dme_keys'} and
           [x['name'] for x in f['benchmarks']] == [x['name'] for x in bs],
           '--benchmark_out=FILE writes the same JSON document')

    r = run('bench', 'engine', '--json', '--min-time', '0.01')
    ok(r.returncode == 0, 'dme bench engine --json exits 0')
    b = gbench(r.stdout, 'bench engine --json')
    cases = len({x['run_name'] for x in b.get('benchmarks', [])})
    positive(b, 'bench engine', ['lookup.ratio_vs_flat', 'lookup.speedup_vs_locked_skiplist',
                                 'map.calls_per_gib_4k_buffers', 'map.register_1g_vs_populate',
                                 'meta.bytes_per_mapped_gib', 'scale.register_1e6_vs_1e3',
                                 'scale.lookup_1e6_vs_1e3', 'scale.entries_per_tib'])
    ok(cases >= 10 and progress(r.stderr, 'engine', cases),
       f'bench engine (seconds a case): stderr has a line as each of the {cases} cases starts and ends')

r = run('demo', '--json', env={'DME_BACKEND': 'sim'})
ok(r.returncode == 0, 'dme demo --json exits 0 on the simulator')
try:
    d = json.loads(r.stdout)
except ValueError:
    d = {}
ok(d.get('backend') == 'sim', 'demo ran on the simulator')
ok(d.get('map_calls_for_512_buffers') == 1, 'demo: 512 shuffled contiguous buffers cost one map call')
ok(d.get('device_buffers_checked') == 1024 and d.get('device_buffers_bad') == 0,
   'demo: the device wrote and read 1024 buffers through the IOMMU')
ok(d.get('readonly_write_blocked') is True, 'demo: the device could not write a read-only buffer')
f = d.get('final', {})
ok(f.get('live_mappings') == 0 and f.get('pinned_bytes') == 0 and f.get('invariants_hold') is True,
   'demo: teardown leaves nothing mapped and the invariants hold')

# DME_LOG_LEVEL governs what the default hook prints (the demo's read-only
# buffer always makes the simulator report one DMA write fault as a warning)
r = run('demo', env={'DME_BACKEND': 'sim'})
ok(r.returncode == 0 and 'dme: warn: ' in r.stderr and 'dme: debug: ' not in r.stderr,
   'dme demo: warnings are printed by default, debug messages are not')
r = run('demo', env={'DME_BACKEND': 'sim', 'DME_LOG_LEVEL': 'err'})
ok(r.returncode == 0 and 'dme: warn: ' not in r.stderr, 'DME_LOG_LEVEL=err hides the warnings')
r = run('demo', env={'DME_LOG_LEVEL': 'debug'})
ok(r.returncode == 0 and 'dme: debug: ' in r.stderr, 'DME_LOG_LEVEL=debug prints debug messages')

# a backend asked for by name that this host lacks: -ENODEV, an error that
# says why, and dme info prints that reason in its table
for backend, node in (('iommufd', '/dev/iommu'), ('vfio', '/dev/vfio/vfio')):
    if os.path.exists(node):
        ok(True, f'DME_BACKEND={backend} without {node} # SKIP this host has {node}')
        ok(True, f'dme info with DME_BACKEND={backend} # SKIP this host has {node}')
        continue
    r = run('demo', env={'DME_BACKEND': backend})
    ok(r.returncode == 1 and f'dme: err: DME_BACKEND={backend} ' in r.stderr and node in r.stderr
       and 'No such device' in r.stderr,
       f'DME_BACKEND={backend} without {node}: demo fails with an error naming {node} (ENODEV)')
    r = run('info', env={'DME_BACKEND': backend})
    line = next((l for l in r.stdout.splitlines() if l.startswith('demo engine')), '')
    ok(r.returncode == 0 and 'none could be opened' in line and node in line and
       'messages above' not in line,
       f'dme info with DME_BACKEND={backend}: the table says why there is no engine')
# a named device that cannot be opened is an error, not the simulator
r = run('demo', '--json', env={'DME_DEVICE': '0000:ff:1f.7'})
ok(r.returncode == 1 and 'dme: err: DME_DEVICE=0000:ff:1f.7 ' in r.stderr and
   '"backend"' not in r.stdout,
   'dme demo with a DME_DEVICE that cannot be opened fails, naming the device')
r = run('info', env={'DME_DEVICE': '0000:ff:1f.7'})
line = next((l for l in r.stdout.splitlines() if l.startswith('demo engine')), '')
ok(r.returncode == 0 and 'none could be opened' in line and '0000:ff:1f.7' in line,
   'dme info with that DME_DEVICE: no demo engine, and why')

r = run('info', '--json', env={'DME_BACKEND': 'iommufd'})
try:
    err = json.loads(r.stdout).get('engine_error', '')
except ValueError:
    err = ''
if os.path.exists('/dev/iommu'):
    ok(True, 'dme info --json says why there is no engine # SKIP this host has /dev/iommu')
else:
    ok('/dev/iommu' in err, 'dme info --json says why there is no engine (engine_error)')
# iommufd attached to a PCI address no machine has: unavailable whether or
# not /dev/iommu exists here
r = run('demo', env={'DME_BACKEND': 'iommufd', 'DME_DEVICE': 'ffff:ff:1f.7'})
ok(r.returncode == 1 and 'dme demo: opening an engine' in r.stderr,
   'demo with an unavailable backend fails cleanly')

print(f"1..{n}")
sys.exit(1 if failed else 0)
