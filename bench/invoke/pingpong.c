// The bare transport under the Lambda Runtime API: PAIRS pairs of processes ping-pong SIZE
// bytes over loopback TCP (blocking sockets, TCP_NODELAY). An invocation costs two round trips.
//   cc -O2 -o /tmp/pingpong bench/invoke/pingpong.c && /tmp/pingpong PAIRS ITERATIONS [SIZE]
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>
#include <string.h>
#include <arpa/inet.h>
#include <netinet/tcp.h>
#include <sys/wait.h>
#include <sys/time.h>
static double now(){struct timeval t;gettimeofday(&t,0);return t.tv_sec+t.tv_usec/1e6;}
int main(int argc,char**argv){int pairs=atoi(argv[1]);long iters=atol(argv[2]);int size=argc>3?atoi(argv[3]):200;
 char buf[65536];memset(buf,'x',sizeof buf);
 int ls=socket(AF_INET,SOCK_STREAM,0);struct sockaddr_in a={0};a.sin_family=AF_INET;a.sin_addr.s_addr=htonl(0x7f000001);
 bind(ls,(void*)&a,sizeof a);socklen_t l=sizeof a;getsockname(ls,(void*)&a,&l);listen(ls,64);
 double t0=now();
 for(int p=0;p<pairs;p++){
  if(fork()==0){int s=socket(AF_INET,SOCK_STREAM,0);connect(s,(void*)&a,sizeof a);int one=1;setsockopt(s,IPPROTO_TCP,TCP_NODELAY,&one,4);
   for(long i=0;i<iters;i++){write(s,buf,size);int got=0;while(got<size){int r=read(s,buf,size-got);if(r<=0)exit(1);got+=r;}}exit(0);}
  int c=accept(ls,0,0);
  if(fork()==0){int one=1;setsockopt(c,IPPROTO_TCP,TCP_NODELAY,&one,4);
   for(long i=0;i<iters;i++){int got=0;while(got<size){int r=read(c,buf,size-got);if(r<=0)exit(1);got+=r;}write(c,buf,size);}exit(0);}
  close(c);}
 while(wait(0)>0);double t=now()-t0;
 printf("%d pairs: %.0f round trips/s\n",pairs,pairs*iters/t);}
