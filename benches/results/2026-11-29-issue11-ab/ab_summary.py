import json,glob,statistics,sys,collections
d=sys.argv[1] if len(sys.argv)>1 else '/tmp/ab'
rows=collections.defaultdict(lambda: collections.defaultdict(list))
for f in sorted(glob.glob(d+'/*.jsonl')):
    name=f.split('/')[-1]
    parts=name[:-6].split('-')  # w1-local-base-1
    wl,sched,v,rnd=parts
    for line in open(f):
        r=json.loads(line)
        if r.get('workload')=='meta': continue
        c=r['config']
        key=(wl,sched,c.get('part') or c.get('op') or c.get('scheduler'))
        if wl=='w1': key=(wl,c.get('scheduler'),c.get('part'))
        assert r.get('correct',True) is not False, (f,r)
        rows[key][v].append(r['seconds'])
print(f"| config | previous commit (median s, all runs) | this change | change |")
print("|---|---|---|---|")
for k,v in sorted(rows.items()):
    b=statistics.median(v['base']); n=statistics.median(v['new'])
    print(f"| {' '.join(map(str,k))} | {b:.4f} ({len(v['base'])} rounds) | {n:.4f} | {100*(n/b-1):+.1f}% |")
