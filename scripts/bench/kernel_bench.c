// Times one CGemmaKernels matrix product against the portable path, for kernel work:
//
//   cc -O3 -ISources/CGemmaKernels/include scripts/bench/kernel_bench.c Sources/CGemmaKernels/*.c \
//      -o /tmp/kernel_bench -lopenblas -lpthread -lm
//   CPUTIME=1 NOREF=1 /tmp/kernel_bench TYPE ROWS N XROWS THREADS [REPS]
//
// TYPE is the ggml type number (8 Q8_0, 2 Q4_0, 0 f32, 30 bf16). Prints the largest relative
// difference to the portable path (unless NOREF) and the best time of REPS, as MACs and weight
// bytes per second. CPUTIME=1 times the calling thread's CPU time instead of wall time (with
// THREADS 1 this measures a core's speed even while the machine is busy). NOPACK=1 uses the
// quantized weights unpacked.
#include "gemma_kernels.h"
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <math.h>
#include <time.h>
#include <sys/mman.h>
static double now(){struct timespec t;clock_gettime(getenv("CPUTIME")?CLOCK_THREAD_CPUTIME_ID:CLOCK_MONOTONIC,&t);return t.tv_sec+t.tv_nsec*1e-9;}
static float frand(unsigned *s){*s=*s*1664525u+1013904223u;return ((*s>>8)/(float)(1<<24))*2-1;}
int main(int argc,char**argv){
  int type=atoi(argv[1]); int64_t rows=atol(argv[2]), n=atol(argv[3]); int xr=atoi(argv[4]); int threads=atoi(argv[5]); int reps=argc>6?atoi(argv[6]):5;
  gemma_set_threads(threads);
  unsigned s=1;
  float *wf=malloc(sizeof(float)*rows*n); for(int64_t i=0;i<rows*n;i++) wf[i]=frand(&s)*0.1f;
  size_t rb = type==8? n/32*34 : type==2? n/32*18 : type==0? n*4 : n*2;
  unsigned char *w=malloc(rb*rows);
  for(int64_t r=0;r<rows;r++){
    if(type==8) gemma_quantize_row_q8_0(wf+r*n, w+r*rb, n);
    else if(type==2){ for(int64_t b=0;b<n/32;b++){ float *x=wf+r*n+b*32; float amax=0,mx=0; for(int j=0;j<32;j++) if(fabsf(x[j])>amax){amax=fabsf(x[j]);mx=x[j];} float d=mx/-8, id=d?1/d:0; _Float16 dh=d; unsigned char*o=w+r*rb+b*18; memcpy(o,&dh,2); for(int j=0;j<16;j++){int lo=(int)(x[j]*id+8.5f); if(lo>15)lo=15; int hi=(int)(x[j+16]*id+8.5f); if(hi>15)hi=15; o[2+j]=lo|(hi<<4);} } }
    else if(type==0) memcpy(w+r*rb, wf+r*n, rb);
    else { for(int64_t i=0;i<n;i++){ unsigned u; memcpy(&u,&wf[r*n+i],4); unsigned short h=u>>16; memcpy(w+r*rb+2*i,&h,2);} }
  }
  float *x=malloc(sizeof(float)*xr*n); for(int64_t i=0;i<xr*n;i++) x[i]=frand(&s);
  float *y=malloc(sizeof(float)*xr*rows), *yr=malloc(sizeof(float)*xr*rows);
  void *packed=NULL; if(type==8||type==2){ size_t pbytes=(gemma_packed_bytes(type,rows,n)+(2<<20)-1)/(2<<20)*(2<<20); packed=aligned_alloc(2<<20,pbytes); madvise(packed,pbytes,MADV_HUGEPAGE); gemma_pack_quantized(type,w,rows,n,packed);}
  #define mm(t,w,r,n,x,xr,y,st) ((t==8||t==2)? gemma_matmul_quantized_f32(t,w,getenv("NOPACK")?NULL:packed,r,n,x,xr,y,st) : gemma_matmul_float(t,w,r,n,x,xr,y,st))
  if(!getenv("NOREF")){ gemma_kernels_set_avx2(0); mm(type,w,rows,n,x,xr,yr,rows);} else memcpy(yr,y,0);
  gemma_kernels_set_avx2(1); mm(type,w,rows,n,x,xr,y,rows);
  double maxerr=0; for(int64_t i=0;i<xr*rows;i++){ double e=fabs(y[i]-yr[i])/(1+fabs(yr[i])); if(e>maxerr)maxerr=e; }
  double best=1e9; for(int r=0;r<reps;r++){ double t=now(); mm(type,w,rows,n,x,xr,y,rows); t=now()-t; if(t<best)best=t; }
  double pairs=(double)rows*n*xr;
  printf("type %d rows %ld n %ld xrows %d threads %d: maxrelerr %.2e, best %.3f ms, %.2f GMAC/s, %.2f GB/s weights\n", type, rows, n, xr, threads, maxerr, best*1e3, pairs/best/1e9, rb*rows/best/1e9);
}
