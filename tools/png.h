/* PNG plots of 2-D targets for the `teacher` program: an 8-bit RGB PNG written without any
 * external library (zlib stream of stored deflate blocks, local CRC-32 and Adler-32), and a
 * density-plus-samples plot on top of it. Files are written atomically: a temporary file
 * next to the target, renamed into place; on any error no partial file is left. */
#ifndef TEACHER_TOOLS_PNG_H
#define TEACHER_TOOLS_PNG_H
#include <stddef.h>

/* Largest accepted width and height, in pixels. */
#define TCLI_PNG_MAX_SIDE 8192

/* Writes rgb (height rows of width x 3 bytes, top row first) to path.
 * Returns 0, or -1 with a message in err (if err_len > 0). */
int tcli_png_write_rgb(const char *path, int width, int height, const unsigned char *rgb,
                       char *err, size_t err_len);

/* Centre of pixel (row, col) of a width x height plot of [x_min, x_max] x [y_min, y_max],
 * row 0 at the top (y_max): x = x_min + (col + 0.5) Δx, y = y_max − (row + 0.5) Δy with
 * Δx = (x_max − x_min) / width, Δy = (y_max − y_min) / height. Callers evaluate the log
 * density there to fill the grid of tcli_png_plot_density. */
void tcli_png_grid_point(int width, int height, double x_min, double x_max, double y_min,
                         double y_max, int row, int col, double *x, double *y);

/* Plots a log density and samples. log_density: height x width values at the pixel centres
 * (tcli_png_grid_point), row 0 = top; NULL draws a white background. It is shown log-scaled:
 * the colour runs from dark blue (log p <= max − 50, -inf) to yellow (the maximum), with a
 * darker contour line every 2.5 nats; NaN pixels are grey. xy: n samples (x, y), drawn as
 * 3 x 3 red dots, clamped to the plot bounds as the reference's plot_samples does.
 * Returns 0, or -1 with a message in err. */
int tcli_png_plot_density(const char *path, int width, int height, const double *log_density,
                          double x_min, double x_max, double y_min, double y_max, size_t n,
                          const double *xy, char *err, size_t err_len);

#endif /* TEACHER_TOOLS_PNG_H */
