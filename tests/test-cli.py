#!/usr/bin/env python3
"""test-cli: the dme command-line tool end to end (TAP).

Checks that `dme info --json` and `dme bench SUITE --json` print one JSON
object with the documented keys, that usage errors exit 2 with a message,
and that a bad DME_* environment makes `dme config` fail. Benchmark values
are only checked to be finite numbers: speed targets live in the benchmark
output, never in tests."""
import json
import math
import os
import re
import shutil
import subprocess
import sys

dme = sys.argv[1]
n = 0
failed = 0


def ok(cond, name):
    global n, failed
    n += 1
    print(f"{'' if cond else 'not '}ok {n} - {name}")
    if not cond:
        failed += 1


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

if '--no-bench' in sys.argv[2:]:
    r = run('bench', 'iova', '--json')
    ok(r.returncode == 1 and 'has no benchmarks' in r.stderr and '-Dbench' in r.stderr,
       'dme bench in a build without benchmarks says so, and how to get them')
else:
    r = run('bench')
    ok(r.returncode == 2 and 'iova' in r.stderr, 'dme bench without a suite lists the suites')

    r = run('bench', 'nosuch')
    ok(r.returncode == 2, 'unknown suite exits 2')

    r = run('bench', 'iova', '--json', '--min-time', '0.01')
    ok(r.returncode == 0, 'dme bench iova --json exits 0')
    try:
        b = json.loads(r.stdout)
    except ValueError:
        b = {}
    keys = ['iova.cached_ns_per_pair', 'iova.speedup_vs_naive_1e5', 'iova.speedup_vs_tree',
            'iova.scaling_2t']
    for k in keys:
        v = b.get(k)
        ok(isinstance(v, (int, float)) and math.isfinite(v) and v > 0, f'bench key {k} is a positive number')
    ok(any(k.startswith('iova.raw.') for k in b), 'bench reports the raw ns figures')

    r = run('bench', 'engine', '--json', '--min-time', '0.01')
    ok(r.returncode == 0, 'dme bench engine --json exits 0')
    try:
        b = json.loads(r.stdout)
    except ValueError:
        b = {}
    for k in ['lookup.ratio_vs_flat', 'lookup.speedup_vs_locked_skiplist', 'map.calls_per_gib_4k_buffers',
              'map.register_1g_vs_populate', 'meta.bytes_per_mapped_gib', 'scale.register_1e6_vs_1e3',
              'scale.lookup_1e6_vs_1e3', 'scale.entries_per_tib']:
        v = b.get(k)
        ok(isinstance(v, (int, float)) and math.isfinite(v) and v > 0, f'bench key {k} is a positive number')

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
