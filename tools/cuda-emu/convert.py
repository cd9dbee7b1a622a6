import re, sys, pathlib
src, dst = sys.argv[1], sys.argv[2]
s = pathlib.Path(src).read_text()
s = s.replace('extern __shared__ float smem[];', 'float *smem = (float *) emu_dyn_smem;')
s = s.replace('#include <cuda_bf16.h>', '#include "cuda_bf16.h"').replace('#include <cuda_fp16.h>', '#include "cuda_fp16.h"')
# name<<<cfg>>> (args);  →  emu_launch (cfg, [=] () { name (args); });
# The lambda copies its captures, as a launch copies its parameters: a launch recorded into a
# graph (and replayed later) must not refer to the launching function's locals.
pat = re.compile(r'([A-Za-z_]\w*(?:<[^<>;]*>)?)<<<(.*?)>>>\s*\((.*?)\);', re.S)
def rep(m):
    return 'emu_launch (%s, [=] () { %s (%s); });' % (m.group(2), m.group(1), m.group(3))
s, n = pat.subn(rep, s)
sys.stderr.write('%s: %d launches\n' % (src, n))
pathlib.Path(dst).write_text(s)
