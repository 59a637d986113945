# node-gyp build of openvstorage's ISA-L addon (ovs_isal.c). Run by build.mjs during `npm install` /
# `npm ci`; needs Debian's libisal-dev (headers in /usr/include/isa-l, libisal.so).
{
  "targets": [
    {
      "target_name": "ovs_isal",
      "sources": ["ovs_isal.c"],
      "libraries": ["-lisal"],
      "cflags": ["-std=gnu11", "-O2", "-Wall", "-Wextra", "-Wno-unused-parameter"]
    }
  ]
}
