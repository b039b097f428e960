/* Linked into manager_peer_foreign in place of the library's build id (src/manager/build_id.c,
 * its own member of the static archive, is then not pulled in): a program of "another build", for
 * the test that a server's arena is mapped only by the same build (manager/share.c). */
const unsigned char mproc__build_id[32] = {0x66, 0x6f, 0x72, 0x65, 0x69, 0x67, 0x6e};
