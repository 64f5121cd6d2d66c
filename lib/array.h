/* array.h -- ARRAY_LEN: the number of elements of an array, counted by the
 * compiler, so a table and its count cannot disagree. Only for arrays: a
 * pointer gives a wrong answer (-Wsizeof-pointer-div warns). */
#ifndef SAGA_ARRAY_H
#define SAGA_ARRAY_H

#define ARRAY_LEN(a) (sizeof(a) / sizeof((a)[0]))

#endif
