/** @file teacher/export.h
 * @brief Export macros.
 *
 * `TCH_API` marks every public declaration (default visibility with GCC/Clang,
 * dllexport/dllimport on Windows unless `TCH_STATIC`). Override it by defining
 * TCH_API before including any libteacher header (cffi does, with TCH_API empty).
 * `TCH_DEPRECATED(msg)` marks deprecated declarations (a GCC attribute; empty elsewhere). */
#ifndef TEACHER_EXPORT_H
#define TEACHER_EXPORT_H

#ifndef TCH_API
#  if defined(_WIN32) && !defined(TCH_STATIC)
#    ifdef TCH_BUILDING
#      define TCH_API __declspec(dllexport)
#    else
#      define TCH_API __declspec(dllimport)
#    endif
#  elif defined(__GNUC__) && __GNUC__ >= 4
#    define TCH_API __attribute__((visibility("default")))
#  else
#    define TCH_API
#  endif
#endif

#ifndef TCH_DEPRECATED
#  if defined(__GNUC__) && !defined(TCH_NO_INLINE_HELPERS)
#    define TCH_DEPRECATED(msg) __attribute__((deprecated(msg)))
#  else
#    define TCH_DEPRECATED(msg)
#  endif
#endif

#endif /* TEACHER_EXPORT_H */
