/* count.c - QEMU TCG plugin (API v1, qemu 7.2) counting executed guest instructions.
 * Build: gcc -shared -fPIC -O2 -o count.so count.c
 * Use:   qemu-aarch64 -plugin ./count.so[,outfile=/path][,atomic=1] ...
 *   default: inline (non-atomic) add per executed TB -> exact for single-threaded guests;
 *   atomic=1: helper call per TB with __atomic add -> no lost updates with guest threads. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <stddef.h>
#include <inttypes.h>
#define QEMU_PLUGIN_EXPORT __attribute__((visibility("default")))
typedef uint64_t qemu_plugin_id_t;
struct qemu_plugin_tb;
typedef struct qemu_info_t qemu_info_t;            /* opaque: not used */
typedef void (*qemu_plugin_udata_cb_t)(qemu_plugin_id_t id, void *userdata);
typedef void (*qemu_plugin_vcpu_udata_cb_t)(unsigned int vcpu_index, void *userdata);
typedef void (*qemu_plugin_vcpu_tb_trans_cb_t)(qemu_plugin_id_t id, struct qemu_plugin_tb *tb);
enum qemu_plugin_op { QEMU_PLUGIN_INLINE_ADD_U64 };
enum qemu_plugin_cb_flags { QEMU_PLUGIN_CB_NO_REGS, QEMU_PLUGIN_CB_R_REGS, QEMU_PLUGIN_CB_RW_REGS };
void qemu_plugin_register_vcpu_tb_trans_cb(qemu_plugin_id_t id, qemu_plugin_vcpu_tb_trans_cb_t cb);
void qemu_plugin_register_vcpu_tb_exec_inline(struct qemu_plugin_tb *tb, enum qemu_plugin_op op, void *ptr, uint64_t imm);
void qemu_plugin_register_vcpu_tb_exec_cb(struct qemu_plugin_tb *tb, qemu_plugin_vcpu_udata_cb_t cb,
                                          enum qemu_plugin_cb_flags flags, void *userdata);
size_t qemu_plugin_tb_n_insns(const struct qemu_plugin_tb *tb);
void qemu_plugin_register_atexit_cb(qemu_plugin_id_t id, qemu_plugin_udata_cb_t cb, void *userdata);

QEMU_PLUGIN_EXPORT int qemu_plugin_version = 1;
static uint64_t insns;
static int atomic_mode;
static const char *outfile;

static void tb_exec(unsigned int vcpu, void *n) { __atomic_fetch_add(&insns, (uint64_t)(uintptr_t)n, __ATOMIC_RELAXED); }

static void tb_trans(qemu_plugin_id_t id, struct qemu_plugin_tb *tb) {
    size_t n = qemu_plugin_tb_n_insns(tb);
    if (atomic_mode) qemu_plugin_register_vcpu_tb_exec_cb(tb, tb_exec, QEMU_PLUGIN_CB_NO_REGS, (void *)(uintptr_t)n);
    else qemu_plugin_register_vcpu_tb_exec_inline(tb, QEMU_PLUGIN_INLINE_ADD_U64, &insns, n);
}

static void at_exit(qemu_plugin_id_t id, void *p) {
    char buf[64];
    snprintf(buf, sizeof buf, "insns: %" PRIu64 "\n", __atomic_load_n(&insns, __ATOMIC_RELAXED));
    FILE *f = outfile ? fopen(outfile, "w") : NULL;
    /* NB: qemu_plugin_outs() prints only with "-d plugin" on qemu 7.2 user mode, so write ourselves */
    if (f) { fputs(buf, f); fclose(f); } else { fputs(buf, stderr); fflush(stderr); }
}

QEMU_PLUGIN_EXPORT int qemu_plugin_install(qemu_plugin_id_t id, const qemu_info_t *info, int argc, char **argv) {
    for (int i = 0; i < argc; i++) {
        if (!strncmp(argv[i], "outfile=", 8)) outfile = argv[i] + 8;
        else if (!strncmp(argv[i], "atomic=", 7)) atomic_mode = atoi(argv[i] + 7);
        else { fprintf(stderr, "count.so: unknown arg %s\n", argv[i]); return -1; }
    }
    qemu_plugin_register_vcpu_tb_trans_cb(id, tb_trans);
    qemu_plugin_register_atexit_cb(id, at_exit, NULL);
    return 0;
}
