/* Fake <stddef.h> for the cffi cdef check: cffi knows size_t and the
 * fixed-width integer types natively, so this header declares nothing. */
