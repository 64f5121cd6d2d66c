# Developer warnings (git's config.mak.dev, Linux's coding style): all of them
# are errors unless SAGA_WERROR is OFF.
add_compile_options(
  -Wall -Wextra -pedantic
  -Wmissing-prototypes -Wstrict-prototypes -Wold-style-definition
  -Wshadow -Wvla -Wwrite-strings -Wcast-qual -Wformat=2 -Wundef
  -Wimplicit-fallthrough -Wpointer-arith
  -fno-common)
if(CMAKE_C_COMPILER_ID STREQUAL "GNU")
  # snprintf into a fixed buffer is our bounded-copy idiom (curl: buffers
  # take a size cap); GCC's guess that it "may be truncated" is noise.
  add_compile_options(-Wno-format-truncation)
endif()
if(SAGA_WERROR)
  add_compile_options(-Werror)
endif()
