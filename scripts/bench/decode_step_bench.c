// Times the matrix products of one Gemma-2B-shaped decode step alone (18 layers x q, k, v, o,
// gate, up, down, then the 256,000-row LM head; one activation row; Q4_0 or Q8_0 weights packed
// in huge pages as the engine holds them), to tell the kernels' share of a step from the rest:
//
//   cc -O3 -ISources/CGemmaKernels/include scripts/bench/decode_step_bench.c Sources/CGemmaKernels/*.c \
//      -o /tmp/decode_step_bench -lopenblas -lpthread -lm
//   /tmp/decode_step_bench TYPE       # 2 (Q4_0) or 8 (Q8_0); about 1.5 or 2.7 GB of memory
//   /tmp/decode_step_bench probe      # `gemma bench`'s bandwidth probe on 4 KB and on huge pages
//
// Prints each kind of product's time and read rate in the best of 6 steps, and the step's.

#include "gemma_kernels.h"
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <sys/mman.h>
static double now(){struct timespec t;clock_gettime(CLOCK_MONOTONIC,&t);return t.tv_sec+t.tv_nsec*1e-9;}
typedef struct { int64_t rows, n; void *w; void *packed; } mat;
static void *huge(size_t b){ b=(b+(2<<20)-1)/(2<<20)*(2<<20); void*p=aligned_alloc(2<<20,b); madvise(p,b,MADV_HUGEPAGE); memset(p,0x11,b); return p;}
static void probe(void){
  size_t bytes=1ul<<30;
  for(int round=0;round<2;round++) for(int huge=0;huge<2;huge++){
    char *b=aligned_alloc(2<<20,bytes); madvise(b,bytes,huge?MADV_HUGEPAGE:MADV_NOHUGEPAGE); memset(b,1,bytes);
    double best=1e9; for(int i=0;i<8;i++){double t=now(); gemma_read_memory_parallel(b,bytes,2); t=now()-t; if(t<best)best=t;}
    printf("probe, %s pages: %.2f GB/s\n",huge?"huge":"4 KB",bytes/best/1e9); free(b);
  }
}
int main(int argc,char**argv){
  if(argc>1&&!strcmp(argv[1],"probe")){ gemma_set_threads(2); probe(); return 0; }
  int type=atoi(argv[1]); int layers=18; gemma_set_threads(2);
  int64_t shapes[7][2]={{2048,2048},{256,2048},{256,2048},{2048,2048},{16384,2048},{16384,2048},{2048,16384}};
  size_t bpb = type==8?34:18;
  mat m[18*7+1]; int cnt=0; size_t total=0;
  for(int l=0;l<layers;l++) for(int s=0;s<7;s++){ m[cnt].rows=shapes[s][0]; m[cnt].n=shapes[s][1]; cnt++; }
  m[cnt].rows=256000; m[cnt].n=2048; cnt++;
  for(int i=0;i<cnt;i++){ size_t rb=m[i].n/32*bpb; m[i].w=huge(rb*m[i].rows); unsigned char*w=m[i].w; for(size_t r=0;r<(size_t)m[i].rows;r++) for(int64_t b=0;b<m[i].n/32;b++){ w[r*rb+b*bpb]=0; w[r*rb+b*bpb+1]=0x3c; }
    m[i].packed=huge(gemma_packed_bytes(type,m[i].rows,m[i].n)); gemma_pack_quantized(type,m[i].w,m[i].rows,m[i].n,m[i].packed); free(m[i].w); m[i].w=NULL; total+=rb*m[i].rows; }
  float *x=malloc(4*16384), *y=malloc(4*256000); for(int i=0;i<16384;i++) x[i]=(i%7)*0.1f;
  double best=1e9; double per[8]={0};
  for(int rep=0;rep<6;rep++){ double t=now(); double ps[8]={0}; for(int i=0;i<cnt;i++){ double u=now(); gemma_matmul_quantized_f32(type,NULL,m[i].packed,m[i].rows,m[i].n,x,1,y,m[i].rows); ps[i==cnt-1?7:i%7]+=now()-u;} t=now()-t; if(t<best){best=t; memcpy(per,ps,sizeof per);} }
  const char*names[8]={"q","k","v","o","gate","up","down","lmhead"};
  for(int s=0;s<8;s++){ double bytes = s==7? 256000.0*2048/32*bpb : 18.0*shapes[s][0]*shapes[s][1]/32*bpb; printf("  %-6s %7.2f ms %6.2f GB/s\n",names[s],per[s]*1e3,bytes/per[s]/1e9);}
  printf("type %d: %.1f MB per step, best %.2f ms, %.2f GB/s\n",type,total/1e6,best*1e3,total/best/1e9);
}
