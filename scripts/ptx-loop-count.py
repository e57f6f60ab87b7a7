#!/usr/bin/env python3
# The instructions of our implicit GEMM kernels' K loop, counted in PTX (no
# GPU and no disassembler needed): per kernel, the innermost loop that holds
# the WMMA multiplications, by class. docs/perf-notes.md uses these counts
# for its issue-bound predictions. Static counts: where the loop branches
# (the k-wise bwd-data gathers test the stride), both sides are counted,
# though a thread runs one. Usage:
#   nvcc -O3 --generate-code=arch=compute_90,code=compute_90 --expt-relaxed-constexpr -std=c++17 \
#     -I native -I .deps/nvidia/nvidia/cudnn/include -I .deps/nvidia/nvidia/cu13/include \
#     -ptx native/cuda/conv_igemm.cu -o /tmp/igemm.ptx
#   python3 scripts/ptx-loop-count.py /tmp/igemm.ptx
import re,sys
ptx=open(sys.argv[1]).read()
funcs=re.split(r'\n(?=\.visible \.entry|\.entry)', ptx)
for f in funcs:
    m=re.search(r'\.entry\s+(\S+)\(',f)
    if not m or 'implicitGemm' not in m.group(1): continue
    name=m.group(1)
    # Mangled names: implicitGemm<T, Problem> and implicitGemmPipelined<Problem, AlongM>.
    kernel = 'pipelined' if 'Pipelined' in name else 'bf16' if 'nv_bfloat16' in name else 'plain tf32'
    if 'Pipelined' in name and 'ELb1' in name: kernel = 'along-m'
    kind = ('fwd' if 'Forward' in name else 'bwd-data' if 'BackwardData' in name else 'bwd-filter') + ' ' + kernel
    L=[l.strip() for l in f.split('\n')]
    labels={l[:-1]:i for i,l in enumerate(L) if re.match(r'^\$L__\w+:$',l)}
    best=None  # the shortest backward branch's body around a wmma.mma
    for i,l in enumerate(L):
        mm=re.search(r'bra(?:\.uni)?\s+(\$L__\w+);',l)
        if mm and mm.group(1) in labels and labels[mm.group(1)]<i:
            body=L[labels[mm.group(1)]:i+1]
            if any('wmma.mma' in x for x in body):
                if best is None or len(body)<len(best): best=body
    ins=[x for x in best if x and not x.startswith(('//','.','{','}')) and not x.endswith(':')]
    c=lambda p: sum(1 for l in ins if re.search(p,l))
    if best is None: continue
    # The compiler may unroll the loop: per K step, the WMMA count says how many steps a pass holds (8 tf32 m16n16k8 or 4 bf16 m16n16k16 a step).
    steps = c(r'wmma\.mma') // (4 if kernel == 'bf16' else 8)
    print(f'{kind:24}', 'per K step', len(ins) // steps, '| loop of', steps, 'step(s):', len(ins),'cp.async',c(r'cp\.async\.ca'),'mma',c(r'wmma\.mma'),'cvt.rna',c(r'cvt\.rna'),'ld.global',c(r'ld\.global'),'setp',c(r'setp'),'selp',c(r'selp'),'add/mad..',c(r'^(@%p\d+ )?(add|mad|sub|shl|shr|and|or|cvta|mul)'))
