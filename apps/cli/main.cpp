#include <cstdio>
int main() { std::puts("nuance"); return 0; }
