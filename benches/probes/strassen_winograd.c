// Probe: how much one or more levels of Strassen-Winograd over OpenBLAS DGEMM
// gain on this machine for C = A·Yᵀ (the W2 matmul's block products), and
// how much they cost in accuracy. Evidence for the W2 matmul bound in
// benches/probes/README.md; not part of Rask.
//
//   gcc -O3 -march=native strassen_winograd.c -o sw \
//       -I/usr/include/x86_64-linux-gnu/openblas-pthread -lopenblas -lm
//   ./sw 2000 LEVELS            # one process
//   ./sw 2000 2 & ./sw 2000 2   # both cores busy, as in W2
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <math.h>
#include <time.h>
#include <cblas.h>
double now(){struct timespec t;clock_gettime(CLOCK_MONOTONIC,&t);return t.tv_sec+t.tv_nsec*1e-9;}
// C (m x n, ldc) = beta*C + A (m x k, lda) * Y^T (Y: n x k, ldy)
typedef struct {double*p; int ld;} M;
static M sub(M a,int i,int j,int r,int c){M s={a.p+(long)i*r*a.ld+(long)j*c,a.ld};return s;}
static void add(M d,M x,M y,int r,int c,double sy){for(int i=0;i<r;i++){double*dp=d.p+(long)i*d.ld,*xp=x.p+(long)i*x.ld,*yp=y.p+(long)i*y.ld;for(int j=0;j<c;j++)dp[j]=xp[j]+sy*yp[j];}}
static void acc(M d,M x,int r,int c,double s){for(int i=0;i<r;i++){double*dp=d.p+(long)i*d.ld,*xp=x.p+(long)i*x.ld;for(int j=0;j<c;j++)dp[j]+=s*xp[j];}}
static void cpy(M d,M x,int r,int c){for(int i=0;i<r;i++)memcpy(d.p+(long)i*d.ld,x.p+(long)i*x.ld,c*8);}
static M alloc(int r,int c){M m={malloc(sizeof(double)*r*c),c};return m;}
void sw(M A,M Y,M C,int m,int n,int k,int lev,double beta){
  if(lev==0||m%2||n%2||k%2){cblas_dgemm(CblasRowMajor,CblasNoTrans,CblasTrans,m,n,k,1.0,A.p,A.ld,Y.p,Y.ld,beta,C.p,C.ld);return;}
  if(beta!=0.0){M t=alloc(m,n);sw(A,Y,t,m,n,k,lev,0.0);acc(C,t,m,n,1);free(t.p);return;}
  int m2=m/2,n2=n/2,k2=k/2;
  M A11=sub(A,0,0,m2,k2),A12=sub(A,0,1,m2,k2),A21=sub(A,1,0,m2,k2),A22=sub(A,1,1,m2,k2);
  // B = Y^T: B11=Y11^T, B12=Y21^T, B21=Y12^T, B22=Y22^T (Y blocks n2 x k2)
  M B11=sub(Y,0,0,n2,k2),B12=sub(Y,1,0,n2,k2),B21=sub(Y,0,1,n2,k2),B22=sub(Y,1,1,n2,k2);
  M C11=sub(C,0,0,m2,n2),C12=sub(C,0,1,m2,n2),C21=sub(C,1,0,m2,n2),C22=sub(C,1,1,m2,n2);
  M S=alloc(m2,k2),T=alloc(n2,k2),P=alloc(m2,n2),Q=alloc(m2,n2);
  // beta==0 assumed for simplicity at all levels (C overwritten)
  // S3=A11-A21, T3=B22-B12 -> M7 -> Q ; 
  add(S,A11,A21,m2,k2,-1); add(T,B22,B12,n2,k2,-1); sw(S,T,Q,m2,n2,k2,lev-1,0.0); // Q=M7
  add(S,A21,A22,m2,k2,1); add(T,B12,B11,n2,k2,-1); sw(S,T,C22,m2,n2,k2,lev-1,0.0); // C22=M5 (S1,T1)
  add(S,S,A11,m2,k2,-1); add(T,B22,T,n2,k2,-1); sw(S,T,P,m2,n2,k2,lev-1,0.0); // P=M6 (S2,T2)
  // U2 = M1+M6: compute M1 into C11 then P+=C11
  sw(A11,B11,C11,m2,n2,k2,lev-1,0.0); // C11 = M1
  acc(P,C11,m2,n2,1); // P = U2
  sw(A12,B21,C11,m2,n2,k2,lev-1,1.0); // C11 = M1+M2
  acc(Q,P,m2,n2,1); // Q = U3 = U2+M7
  acc(P,C22,m2,n2,1); // P = U4 = U2+M5
  acc(C22,Q,m2,n2,1); // C22 = U3+M5
  add(S,A12,S,m2,k2,-1); // S4 = A12 - S2
  cpy(C12,P,m2,n2); sw(S,B22,C12,m2,n2,k2,lev-1,1.0); // C12 = U4 + M3
  add(T,T,B21,n2,k2,-1); // T4 = T2 - B21
  cpy(C21,Q,m2,n2); 
  // C21 = U3 - M4 ; M4 = A22*T4
  sw(A22,T,P,m2,n2,k2,lev-1,0.0); acc(C21,P,m2,n2,-1);
  free(S.p);free(T.p);free(P.p);free(Q.p);
}
int main(int argc,char**argv){
  int n=atoi(argv[1]); int lev=atoi(argv[2]);
  openblas_set_num_threads(1);
  M a=alloc(n,n),y=alloc(n,n),c=alloc(n,n),r=alloc(n,n);
  srand(1);
  for(long i=0;i<(long)n*n;i++){a.p[i]=rand()/(double)RAND_MAX-0.5;y.p[i]=rand()/(double)RAND_MAX-0.5;}
  cblas_dgemm(CblasRowMajor,CblasNoTrans,CblasTrans,n,n,n,1.0,a.p,n,y.p,n,0.0,r.p,n);
  for(int rep=0;rep<3;rep++){
    double t=now(); sw(a,y,c,n,n,n,lev,0.0); t=now()-t;
    double e=0,mx=0; for(long i=0;i<(long)n*n;i++){double d=fabs(c.p[i]-r.p[i]);if(d>e)e=d;if(fabs(r.p[i])>mx)mx=fabs(r.p[i]);}
    printf("n=%d lev=%d %.3fs eff %.1f GF/s maxerr %.2e (max|C| %.1f)\n",n,lev,t,2.0*n*n*(double)n/t/1e9,e,mx);
  }
}
