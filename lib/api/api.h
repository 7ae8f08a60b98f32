/* Shared by the public entry points in lib/api/: argument checks. */
#ifndef TCHI_API_H
#define TCHI_API_H
#include "core/core.h"

/* Returns TCH_E_ARG with a message from the enclosing public function when cond is false. */
#define CHECK_ARG(cond, ...) do { if (!(cond)) return tchi_fail(TCH_E_ARG, __VA_ARGS__); } while (0)

#endif /* TCHI_API_H */
