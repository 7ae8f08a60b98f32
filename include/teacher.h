/* libteacher umbrella header: include this one. */
#ifndef TEACHER_H
#define TEACHER_H
#include "teacher/teacher.h"
#endif
