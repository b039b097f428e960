import time
from multiprocessing.managers import SyncManager
m = SyncManager(address="\0pydperf2", authkey=b"secret"); m.connect(); d = m.dict()
t0=time.perf_counter()
for i in range(20000):
    k = "k%d" % (i & 1023); d[k] = k; d[k]
print("ops/s", 40000/(time.perf_counter()-t0))
